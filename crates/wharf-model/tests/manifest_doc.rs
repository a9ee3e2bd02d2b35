//! Keeps docs/manifest.md true:
//! - every ```toml block in it is a manifest that loads (with a bundle holding `job.R`);
//! - a ```toml block whose first line is `# invalid` must be refused, and when a ```text
//!   block follows it directly, that block is exactly the error text users see;
//! - every key the parser accepts has a heading (keys are read from the parser's own
//!   "keys allowed ..." messages, so a new key fails this test until it is documented);
//! - the inferred commands are quoted exactly.

use std::path::Path;

use wharf_model::manifest::infer::{PLUMBER_EXPRESSION, SHINY_EXPRESSION};
use wharf_model::manifest::{load_manifest, ManifestErrors, RESERVED_ENV_PREFIX};

const INVALID_MARKER: &str = "# invalid";
const COMMAND: &str = "command = [\"Rscript\", \"job.R\"]\n";

/// A fenced code block of the markdown file.
#[derive(Debug)]
struct FencedBlock {
    /// The info string after the opening fence ("toml", "text", "").
    language: String,
    /// 1-based line of the opening fence, for messages.
    opening_line: usize,
    /// 1-based line of the closing fence.
    closing_line: usize,
    text: String,
}

fn read_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/manifest.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn bundle_files() -> Vec<String> {
    vec!["job.R".to_string()]
}

fn fenced_blocks(markdown: &str) -> Vec<FencedBlock> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, Vec<&str>)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => open = Some((info.trim().to_string(), number, Vec::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                let (language, opening_line, lines) = open.take().unwrap();
                let mut text = lines.join("\n");
                text.push('\n');
                blocks.push(FencedBlock {
                    language,
                    opening_line,
                    closing_line: number,
                    text,
                });
            }
            (Some((_, _, lines)), _) => lines.push(line),
            (None, None) => {}
        }
    }
    assert!(
        open.is_none(),
        "docs/manifest.md has an unclosed code fence"
    );
    blocks
}

fn load(text: &str) -> Result<wharf_model::manifest::Manifest, ManifestErrors> {
    load_manifest("wharf.toml", Some(text), &bundle_files())
}

/// The ```text block right after `block` (only blank lines between), if any.
fn following_text_block<'b>(
    markdown: &str,
    block: &FencedBlock,
    next: Option<&'b FencedBlock>,
) -> Option<&'b FencedBlock> {
    let next = next.filter(|next| next.language == "text")?;
    let lines: Vec<&str> = markdown.lines().collect();
    let between = &lines[block.closing_line..next.opening_line - 1];
    between
        .iter()
        .all(|line| line.trim().is_empty())
        .then_some(next)
}

#[test]
fn every_toml_example_loads_and_every_invalid_one_is_refused() {
    let markdown = read_doc();
    let blocks = fenced_blocks(&markdown);
    let mut checked = 0;
    let mut invalid = 0;
    let mut problems = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        if block.language != "toml" {
            continue;
        }
        checked += 1;
        let place = format!("docs/manifest.md:{}", block.opening_line);
        let is_invalid = block.text.lines().next().map(str::trim) == Some(INVALID_MARKER);
        match (load(&block.text), is_invalid) {
            (Ok(_), false) => {}
            (Err(errors), false) => problems.push(format!(
                "{place}: this example should load but is refused:\n{}\n{errors}",
                block.text
            )),
            (Ok(manifest), true) => problems.push(format!(
                "{place}: this example is marked {INVALID_MARKER} but loads:\n{}\n{manifest:?}",
                block.text
            )),
            (Err(errors), true) => {
                invalid += 1;
                if let Some(shown) = following_text_block(&markdown, block, blocks.get(index + 1)) {
                    let actual = errors.to_string();
                    if actual.trim_end() != shown.text.trim_end() {
                        problems.push(format!(
                            "docs/manifest.md:{}: the errors shown are not what the parser says.\nshown:\n{}\nactual:\n{actual}",
                            shown.opening_line, shown.text
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(
        checked >= 40,
        "expected many toml examples, found {checked}"
    );
    assert!(invalid >= 4, "expected the error examples, found {invalid}");
}

/// The keys the parser lists as allowed in the message for an unknown key in `manifest`.
fn allowed_keys(manifest: &str) -> Vec<String> {
    let errors = load(manifest).expect_err(manifest);
    let message = errors
        .0
        .iter()
        .map(|error| error.message.as_str())
        .find(|message| message.contains("eys allowed "))
        .unwrap_or_else(|| panic!("no unknown-key message for {manifest:?}: {errors}"));
    let after = &message[message.find("eys allowed ").unwrap()..];
    let list = &after[after.find(": ").unwrap() + 2..];
    list.split(", ").map(str::to_string).collect()
}

fn is_documented_as_heading(markdown: &str, path: &str) -> bool {
    let spellings = [
        format!("`{path}`"),
        format!("`[{path}]`"),
        format!("`[[{path}]]`"),
    ];
    markdown.lines().any(|line| {
        line.starts_with('#') && spellings.iter().any(|spelling| line.contains(spelling))
    })
}

#[test]
fn every_key_the_parser_accepts_has_a_heading() {
    let markdown = read_doc();
    let unknown = "zz_not_a_key = \"x\"\n";
    let sections = [
        ("", format!("{unknown}{COMMAND}")),
        ("job.", format!("{COMMAND}[job]\n{unknown}")),
        (
            "job.trigger[].",
            format!("{COMMAND}[[job.trigger]]\nschedule = \"0 * * * *\"\n{unknown}"),
        ),
        ("job.io.", format!("{COMMAND}[job.io]\n{unknown}")),
        ("service.", format!("{COMMAND}[service]\n{unknown}")),
        (
            "notify[].",
            format!("{COMMAND}[[notify]]\nchannel = \"a\"\n{unknown}"),
        ),
    ];
    let mut missing = Vec::new();
    let mut count = 0;
    for (prefix, manifest) in &sections {
        for key in allowed_keys(manifest) {
            count += 1;
            let path = format!("{prefix}{key}");
            if !is_documented_as_heading(&markdown, &path) {
                missing.push(path);
            }
        }
    }
    // Keys inside inline tables are documented in their parent's section.
    let nested = [
        format!("{COMMAND}[[job.trigger]]\nobject_created = {{ bucket = \"input\", zz_not_a_key = \"x\" }}\n"),
        format!("{COMMAND}[env]\nTOKEN = {{ secret = \"t\", zz_not_a_key = \"x\" }}\n"),
    ];
    for manifest in &nested {
        for key in allowed_keys(manifest) {
            count += 1;
            if !markdown.contains(&format!("`{key}`")) {
                missing.push(key);
            }
        }
    }
    assert!(count >= 30, "expected every key, found {count}");
    assert!(
        missing.is_empty(),
        "docs/manifest.md has no heading for these keys: {missing:?}"
    );
}

#[test]
fn inferred_commands_and_reserved_prefix_are_quoted_exactly() {
    let markdown = read_doc();
    for expected in [
        PLUMBER_EXPRESSION,
        SHINY_EXPRESSION,
        "[\"python3\", \"main.py\"]",
        RESERVED_ENV_PREFIX,
    ] {
        assert!(
            markdown.contains(expected),
            "docs/manifest.md does not contain {expected:?}"
        );
    }
}

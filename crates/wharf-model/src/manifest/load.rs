//! `load_manifest`: TOML text → checked [`Manifest`], or every problem with its line.
//!
//! The file is parsed with `toml_edit`, which keeps the span of every key and value, and
//! walked by hand rather than deserialized, so unknown keys, wrong types and invalid
//! values are all reported in one go instead of stopping at the first.

use std::collections::BTreeMap;

use toml_edit::{ImDocument, Item, TableLike};

use crate::manifest::checker::{
    describe_item, describe_value, join_path, toml_array, Checker, SECRET_KEYS, SERVICE_KEYS,
    TOP_KEYS,
};
use crate::manifest::infer::{explain_no_inference, infer_app};
use crate::manifest::job::read_job;
use crate::manifest::{
    AppKind, EnvValue, JobSettings, Manifest, ManifestErrors, ServiceSettings, ACCESS_VALUES,
    RUNTIMES,
};
use crate::name::validate_app_name;

/// Environment variables Wharf sets itself start with this.
pub const RESERVED_ENV_PREFIX: &str = "WHARF_";

const COMMAND_EXAMPLE: &str = "command = [\"Rscript\", \"job.R\"]";

/// What the file says, before inference fills the gaps. `None` for a field that is
/// absent or invalid (invalid ones already have an error).
#[derive(Default)]
struct ReadManifest {
    name: Option<String>,
    kind: Option<AppKind>,
    kind_given: bool,
    command: Option<Vec<String>>,
    command_given: bool,
    runtime: Option<String>,
    env: BTreeMap<String, EnvValue>,
    job: JobSettings,
    service: ServiceSettings,
    sticky_given: bool,
    notify: Vec<crate::notify::NotifyRule>,
}

/// Checks a manifest and fills in what can be inferred from the bundle's files.
///
/// `file_label`: what to call the file in errors, e.g. "wharf.toml" or "my-app/wharf.toml".
/// `manifest_text`: the contents of wharf.toml, or `None` when the bundle has none.
/// `files`: relative ('/'-separated) paths of every file in the bundle, for inference.
///
/// Errors come sorted by line; a TOML syntax error is reported alone.
pub fn load_manifest(
    file_label: &str,
    manifest_text: Option<&str>,
    files: &[String],
) -> Result<Manifest, ManifestErrors> {
    let mut checker = Checker::new(file_label, manifest_text.unwrap_or_default());
    let mut read = ReadManifest::default();
    if let Some(text) = manifest_text {
        match ImDocument::parse(text) {
            Ok(document) => read = read_document(&mut checker, document.as_table()),
            Err(error) => {
                let line = checker.line_of(error.span());
                checker.error(line, None, syntax_message(error.message()));
                return Err(ManifestErrors(checker.errors));
            }
        }
    }
    let inferred = fill_in_kind_and_command(
        &mut checker,
        &mut read,
        file_label,
        manifest_text.is_some(),
        files,
    );
    let mut errors = checker.errors;
    errors.sort_by_key(|error| (error.line.is_none(), error.line));
    match inferred {
        Some((kind, command)) if errors.is_empty() => Ok(Manifest {
            name: read.name,
            kind,
            command,
            runtime: read.runtime,
            env: read.env,
            job: read.job,
            service: read.service,
            notify: read.notify,
        }),
        _ => Err(ManifestErrors(errors)),
    }
}

/// toml_edit's message can span lines ("invalid string\nexpected `\"`"): join them.
fn syntax_message(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    format!("invalid TOML: {}", parts.join("; "))
}

fn fill_in_kind_and_command(
    checker: &mut Checker<'_>,
    read: &mut ReadManifest,
    file_label: &str,
    has_manifest: bool,
    files: &[String],
) -> Option<(AppKind, Vec<String>)> {
    if (read.kind_given && read.kind.is_none()) || (read.command_given && read.command.is_none()) {
        return None;
    }
    let inference = match (&read.kind, &read.command) {
        (Some(kind), Some(command)) => return Some((*kind, command.clone())),
        (None, Some(_)) => infer_app(None, files),
        (kind, None) => infer_app(*kind, files),
    };
    if let Some(inference) = &inference {
        if inference.sticky && !read.sticky_given {
            read.service.sticky = true;
        }
    }
    if let Some(command) = &read.command {
        let kind = inference.map_or(AppKind::Job, |inference| inference.kind);
        return Some((kind, command.clone()));
    }
    if let Some(inference) = inference {
        return Some((inference.kind, inference.command));
    }
    let (explanation, suggestion) = explain_no_inference(read.kind, files);
    let fix = if has_manifest {
        format!("add command = {} to {file_label}", toml_array(&suggestion))
    } else {
        format!(
            "create {file_label} containing command = {}",
            toml_array(&suggestion)
        )
    };
    checker.field_error(
        None,
        "command",
        format!("no command given, and none can be inferred: {explanation}; {fix}"),
    );
    None
}

fn read_document(checker: &mut Checker<'_>, root: &dyn TableLike) -> ReadManifest {
    checker.check_keys(root, "", "the top level", &TOP_KEYS);
    let mut read = ReadManifest::default();
    if let Some(name) = checker.read_string(root, "", "name", "\"my-app\"") {
        match validate_app_name(&name.value) {
            Ok(()) => read.name = Some(name.value),
            Err(message) => checker.field_error(name.line, "name", message),
        }
    }
    read.kind_given = root.contains_key("kind");
    if let Some(kind) = checker.read_choice(root, "", "kind", &["job", "service"]) {
        read.kind = kind.value.parse().ok();
    }
    read.command_given = root.contains_key("command");
    read.command = read_command(checker, root);
    if let Some(runtime) = checker.read_choice(root, "", "runtime", &RUNTIMES) {
        read.runtime = Some(runtime.value);
    }
    if let Some((env, _)) = checker.read_table(root, "", "env", "an [env] section") {
        read.env = read_env(checker, env);
    }
    if let Some((job, _)) = checker.read_table(root, "", "job", "a [job] section") {
        read.job = read_job(checker, job);
    }
    if let Some((service, _)) = checker.read_table(root, "", "service", "a [service] section") {
        read.sticky_given = service.contains_key("sticky");
        read.service = read_service(checker, service);
    }
    if let Some((key, item)) = root.get_key_value("notify") {
        let line = checker.item_line(key, item);
        read.notify = crate::manifest::notify::read_notify(checker, item, line);
    }
    read
}

/// Splits a shell-style string into words for the "write command = [...]" hint, when it
/// is simple enough to do so without guessing at quoting.
fn suggest_argv(shell_string: &str) -> Vec<String> {
    let simple = !shell_string.contains(['"', '\'', '\\', '$', '|', '&', ';', '<', '>', '`']);
    let words: Vec<String> = shell_string
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if simple && !words.is_empty() {
        words
    } else {
        vec!["Rscript".to_string(), "job.R".to_string()]
    }
}

fn read_command(checker: &mut Checker<'_>, root: &dyn TableLike) -> Option<Vec<String>> {
    let (key, item) = root.get_key_value("command")?;
    let line = checker.item_line(key, item);
    if let Some(shell_string) = item.as_str() {
        let argv = suggest_argv(shell_string);
        checker.field_error(
            line,
            "command",
            format!(
                "must be a list of arguments, not a shell string: write command = {}",
                toml_array(&argv)
            ),
        );
        return None;
    }
    let Some(array) = item.as_array() else {
        checker.field_error(
            line,
            "command",
            format!(
                "expected a list of arguments, found {}; write for example {COMMAND_EXAMPLE}",
                describe_item(item)
            ),
        );
        return None;
    };
    if array.is_empty() {
        checker.field_error(
            line,
            "command",
            format!("is empty; write the program and its arguments, for example {COMMAND_EXAMPLE}"),
        );
        return None;
    }
    let mut command = Vec::with_capacity(array.len());
    let mut valid = true;
    for (index, value) in array.iter().enumerate() {
        let value_line = checker.line_of(value.span()).or(line);
        let field = format!("command[{index}]");
        match value.as_str() {
            Some(argument) if index == 0 && argument.trim().is_empty() => {
                checker.field_error(
                    value_line,
                    &field,
                    format!("the program name is empty; write for example {COMMAND_EXAMPLE}"),
                );
                valid = false;
            }
            Some(argument) => command.push(argument.to_string()),
            None => {
                checker.field_error(
                    value_line,
                    &field,
                    format!(
                        "expected a string, found {}; quote every argument",
                        describe_value(value)
                    ),
                );
                valid = false;
            }
        }
    }
    valid.then_some(command)
}

fn is_env_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_env(checker: &mut Checker<'_>, table: &dyn TableLike) -> BTreeMap<String, EnvValue> {
    let mut env = BTreeMap::new();
    for (name, item) in table.iter() {
        let field = join_path("env", name);
        let key_line = checker.line_of(table.key(name).and_then(|key| key.span()));
        if !is_env_name(name) {
            checker.field_error(
                key_line,
                &field,
                format!(
                    "\"{name}\" is not a valid environment variable name: use letters, digits and '_', not starting with a digit (for example \"MY_SETTING\")"
                ),
            );
            continue;
        }
        if name.to_ascii_uppercase().starts_with(RESERVED_ENV_PREFIX) {
            let rest = &name[RESERVED_ENV_PREFIX.len()..];
            let rename = if is_env_name(rest) {
                rest
            } else {
                "MY_SETTING"
            };
            checker.field_error(
                key_line,
                &field,
                format!(
                    "names starting with {RESERVED_ENV_PREFIX} are reserved for variables Wharf sets; rename it, for example to \"{rename}\""
                ),
            );
            continue;
        }
        let line = checker.line_of(item.span()).or(key_line);
        if let Some(value) = item.as_str() {
            env.insert(name.to_string(), EnvValue::Plain(value.to_string()));
        } else if let Some(secret_table) = item.as_table_like() {
            if let Some(secret) = read_secret(checker, secret_table, &field, line) {
                env.insert(name.to_string(), EnvValue::Secret { secret });
            }
        } else {
            let quoted = match item {
                Item::Value(value) if !value.is_array() && !value.is_inline_table() => {
                    let raw = value.to_string();
                    format!("; quote it: {name} = \"{}\"", raw.trim())
                }
                _ => String::new(),
            };
            checker.field_error(
                line,
                &field,
                format!(
                    "expected a string or {{ secret = \"name\" }}, found {}{quoted}",
                    describe_item(item)
                ),
            );
        }
    }
    env
}

fn read_secret(
    checker: &mut Checker<'_>,
    table: &dyn TableLike,
    field: &str,
    line: Option<usize>,
) -> Option<String> {
    checker.check_keys(table, field, "a secret reference", &SECRET_KEYS);
    let secret = match checker.read_string(table, field, "secret", "\"slack\"") {
        Some(secret) => secret,
        None => {
            if !table.contains_key("secret") {
                checker.field_error(
                    line,
                    field,
                    "a table here must name a secret: write { secret = \"name\" }",
                );
            }
            return None;
        }
    };
    if secret.value.trim().is_empty() {
        checker.field_error(
            secret.line,
            &join_path(field, "secret"),
            "the secret name is empty; write { secret = \"name\" } with the name used in `wharf secret set`",
        );
        return None;
    }
    Some(secret.value)
}

fn read_service(checker: &mut Checker<'_>, table: &dyn TableLike) -> ServiceSettings {
    let path = "service";
    checker.check_keys(table, path, "[service]", &SERVICE_KEYS);
    let mut service = ServiceSettings::default();
    if let Some(health) = checker.read_string(table, path, "health", "\"/healthz\"") {
        if health.value.starts_with('/') {
            service.health = health.value;
        } else {
            checker.field_error(
                health.line,
                "service.health",
                format!(
                    "\"{}\" is not a URL path; write a path starting with '/', such as \"/\" or \"/healthz\"",
                    health.value
                ),
            );
        }
    }
    let count =
        |checker: &mut Checker<'_>, key: &str, minimum: u32, maximum: u32, target: &mut u32| {
            let located = checker.read_count(table, path, key, minimum, maximum);
            if let Some(located) = &located {
                *target = located.value;
            }
            located.and_then(|located| located.line)
        };
    let min_line = count(checker, "min_replicas", 0, 1000, &mut service.min_replicas);
    let max_line = count(checker, "max_replicas", 1, 1000, &mut service.max_replicas);
    let out_line = count(
        checker,
        "scale_out_above",
        1,
        100_000,
        &mut service.scale_out_above,
    );
    let in_line = count(
        checker,
        "scale_in_below",
        0,
        100_000,
        &mut service.scale_in_below,
    );
    count(
        checker,
        "max_inflight",
        0,
        1_000_000,
        &mut service.max_inflight,
    );
    if let Some(sticky) = checker.read_bool(table, path, "sticky") {
        service.sticky = sticky.value;
    }
    if let Some(idle_timeout) = checker.read_duration(table, path, "idle_timeout") {
        service.idle_timeout = Some(idle_timeout.value);
    }
    if let Some(access) = checker.read_choice(table, path, "access", &ACCESS_VALUES) {
        service.access = access.value;
    }
    for (key, target) in [
        ("scale_in_cooldown", &mut service.scale_in_cooldown),
        ("start_timeout", &mut service.start_timeout),
        ("cold_start_timeout", &mut service.cold_start_timeout),
        ("queue_timeout", &mut service.queue_timeout),
        ("connect_timeout", &mut service.connect_timeout),
        ("read_timeout", &mut service.read_timeout),
        ("drain_timeout", &mut service.drain_timeout),
    ] {
        if let Some(duration) = checker.read_duration(table, path, key) {
            if duration.value.is_zero() && key != "scale_in_cooldown" && key != "drain_timeout" {
                checker.field_error(
                    duration.line,
                    &join_path(path, key),
                    format!("{key} is zero; give a positive duration such as \"30s\""),
                );
            } else {
                *target = duration.value;
            }
        }
    }
    if service.min_replicas > service.max_replicas {
        let (line, field) = pick_line(
            max_line,
            "service.max_replicas",
            min_line,
            "service.min_replicas",
        );
        checker.field_error(
            line,
            field,
            format!(
                "min_replicas ({}) is larger than max_replicas ({}); raise max_replicas or lower min_replicas",
                service.min_replicas, service.max_replicas
            ),
        );
    }
    if service.scale_in_below >= service.scale_out_above {
        let (line, field) = pick_line(
            in_line,
            "service.scale_in_below",
            out_line,
            "service.scale_out_above",
        );
        checker.field_error(
            line,
            field,
            format!(
                "scale_in_below ({}) must be less than scale_out_above ({}), or replicas would be added and removed in a loop",
                service.scale_in_below, service.scale_out_above
            ),
        );
    }
    service
}

/// The line and field of whichever of two related settings the file sets (the first if both).
fn pick_line<'f>(
    first: Option<usize>,
    first_field: &'f str,
    second: Option<usize>,
    second_field: &'f str,
) -> (Option<usize>, &'f str) {
    match (first, second) {
        (Some(line), _) => (Some(line), first_field),
        (None, Some(line)) => (Some(line), second_field),
        (None, None) => (None, first_field),
    }
}

//! ListObjectsV2 over a bucket of 100,000 objects.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::report::{summarize, Row, Section, Summary};
use crate::s3::{parse_list_page, ListPage, ListQuery, S3Client};
use crate::server::{Server, ServerOptions};
use crate::Bench;

pub const OBJECTS: usize = 100_000;
/// Keys are `dDDD/fFFF.csv`: this many folders of `OBJECTS / FOLDERS` keys.
const FOLDERS: usize = 100;
const PAGE: usize = 1000;
/// The first uploads go one at a time (to tell the sequential rate), the rest this many
/// at once.
const SEQUENTIAL_FILL: usize = 1000;
const FILL_IN_FLIGHT: usize = 16;
/// Full passes over the bucket with continuation tokens.
const PASSES: usize = 3;
/// Requests for the prefix + delimiter listings and the small GET floor.
const SINGLE_REQUESTS: usize = 100;
/// Requests for the root listing with a delimiter (much slower; see the notes).
const ROOT_REQUESTS: usize = 10;
/// Pages (and folders) at each end of the bucket compared in the notes.
const ENDS: usize = 10;
const BUCKET: &str = "many";
const BODY: &[u8] = b"id,value\n1,2\n";

fn key_of(index: usize) -> String {
    let per_folder = OBJECTS / FOLDERS;
    format!("d{:03}/f{:03}.csv", index / per_folder, index % per_folder)
}

/// Uploads the keys `range` with `in_flight` uploads at once.
fn fill(s3: &S3Client, range: std::ops::Range<usize>, in_flight: usize) -> anyhow::Result<()> {
    let next = AtomicUsize::new(range.start);
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..in_flight)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= range.end {
                            return Ok(());
                        }
                        s3.put(BUCKET, &key_of(index), BODY.to_vec())?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an upload thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// One timed list request (the time covers the whole answer, not the parsing).
fn timed_list(s3: &S3Client, query: &ListQuery) -> anyhow::Result<(f64, ListPage)> {
    let started = Instant::now();
    let xml = s3.list_raw(BUCKET, query)?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    Ok((elapsed, parse_list_page(&xml)?))
}

/// Pages through the whole bucket; returns each page's time and the pass's total.
fn full_pass(s3: &S3Client) -> anyhow::Result<(Vec<f64>, Duration)> {
    let started = Instant::now();
    let mut times = Vec::new();
    let mut token = None;
    let mut count = 0usize;
    let mut last_key: Option<String> = None;
    loop {
        let query = ListQuery {
            continuation_token: token.take(),
            max_keys: PAGE,
            ..ListQuery::default()
        };
        let (elapsed, page) = timed_list(s3, &query)?;
        times.push(elapsed);
        for key in &page.keys {
            if last_key.as_ref().is_some_and(|last| last >= key) {
                bail!("the listing is out of order or repeats: {last_key:?} then {key:?}");
            }
            last_key = Some(key.clone());
        }
        count += page.keys.len();
        if !page.truncated {
            break;
        }
        if page.keys.len() != PAGE {
            bail!("a truncated page held {} keys, not {PAGE}", page.keys.len());
        }
        token = Some(
            page.next_token
                .context("a truncated page has no NextContinuationToken")?,
        );
    }
    let total = started.elapsed();
    if count != OBJECTS {
        bail!("paging through the bucket found {count} keys, not {OBJECTS}");
    }
    Ok((times, total))
}

struct Samples {
    sequential_fill: Duration,
    concurrent_fill: Duration,
    pages: Vec<f64>,
    pass_totals: Vec<Duration>,
    prefix_pages: Vec<f64>,
    root_delimiter_pages: Vec<f64>,
    small_gets: Vec<f64>,
    page_bytes: usize,
    probes: Probes,
}

/// Small requests that tell the costs apart (median milliseconds of `PROBES` each).
#[derive(Debug, Clone, Copy)]
struct Probes {
    /// `max-keys=1&start-after=` the bucket's first key.
    one_key_at_start: f64,
    /// `max-keys=1&start-after=` a key near the bucket's end.
    one_key_at_end: f64,
    /// The root listing with a delimiter and `max-keys=100`: the same 100 common prefixes.
    root_with_max_keys_100: f64,
}

const PROBES: usize = 10;

fn median_of(samples: &[f64]) -> anyhow::Result<f64> {
    Ok(summarize(samples).context("no samples")?.p50)
}

/// Times the diagnostic requests.
fn probe(s3: &S3Client) -> anyhow::Result<Probes> {
    let one_key_after = |key: String| -> anyhow::Result<f64> {
        let mut times = Vec::with_capacity(PROBES);
        for _ in 0..PROBES {
            let query = ListQuery {
                start_after: Some(key.clone()),
                max_keys: 1,
                ..ListQuery::default()
            };
            let (elapsed, page) = timed_list(s3, &query)?;
            if page.keys.len() != 1 {
                bail!("max-keys=1 after {key} listed {} keys", page.keys.len());
            }
            times.push(elapsed);
        }
        median_of(&times)
    };
    let one_key_at_start = one_key_after(key_of(0))?;
    let one_key_at_end = one_key_after(key_of(OBJECTS - 10))?;
    let mut root = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let query = ListQuery {
            delimiter: Some("/".into()),
            max_keys: FOLDERS,
            ..ListQuery::default()
        };
        let (elapsed, page) = timed_list(s3, &query)?;
        if page.common_prefixes != FOLDERS {
            bail!(
                "delimiter / with max-keys={FOLDERS} listed {} common prefixes",
                page.common_prefixes
            );
        }
        root.push(elapsed);
    }
    Ok(Probes {
        one_key_at_start,
        one_key_at_end,
        root_with_max_keys_100: median_of(&root)?,
    })
}

fn collect(bench: &Bench) -> anyhow::Result<Samples> {
    let scratch = bench.fresh_dir("list")?;
    let mut server = Server::spawn(
        &bench.wharf_bin,
        &scratch.join("data"),
        &scratch,
        &ServerOptions::default(),
    )?;
    server.wait_ready(Duration::from_millis(5), Duration::from_secs(30))?;
    let s3 = S3Client::new(&server)?;
    s3.create_bucket(BUCKET)?;

    let started = Instant::now();
    fill(&s3, 0..SEQUENTIAL_FILL, 1)?;
    let sequential_fill = started.elapsed();
    let started = Instant::now();
    fill(&s3, SEQUENTIAL_FILL..OBJECTS, FILL_IN_FLIGHT)?;
    let concurrent_fill = started.elapsed();
    println!(
        "  (filled {OBJECTS} objects: {SEQUENTIAL_FILL} one at a time in {:.1} s, the rest {FILL_IN_FLIGHT} at once in {:.1} s)",
        sequential_fill.as_secs_f64(),
        concurrent_fill.as_secs_f64()
    );

    // One warm-up pass, then the measured passes.
    full_pass(&s3)?;
    let mut pages = Vec::new();
    let mut pass_totals = Vec::new();
    for _ in 0..PASSES {
        let (times, total) = full_pass(&s3)?;
        pages.extend(times);
        pass_totals.push(total);
    }

    let mut prefix_pages = Vec::new();
    let mut root_delimiter_pages = Vec::new();
    let mut small_gets = Vec::new();
    let mut page_bytes = 0;
    for _ in 0..ROOT_REQUESTS {
        let query = ListQuery {
            delimiter: Some("/".into()),
            max_keys: PAGE,
            ..ListQuery::default()
        };
        let (elapsed, page) = timed_list(&s3, &query)?;
        if !page.keys.is_empty() || page.common_prefixes != FOLDERS || page.truncated {
            bail!(
                "delimiter / at the root listed {} keys and {} common prefixes, expected {FOLDERS} prefixes",
                page.keys.len(),
                page.common_prefixes
            );
        }
        root_delimiter_pages.push(elapsed);
    }
    for round in 0..SINGLE_REQUESTS {
        let folder = round % FOLDERS;
        let query = ListQuery {
            prefix: Some(format!("d{folder:03}/")),
            delimiter: Some("/".into()),
            max_keys: PAGE,
            ..ListQuery::default()
        };
        let (elapsed, page) = timed_list(&s3, &query)?;
        if page.keys.len() != OBJECTS / FOLDERS || page.common_prefixes != 0 || page.truncated {
            bail!(
                "prefix d{folder:03}/ with delimiter / listed {} keys and {} common prefixes",
                page.keys.len(),
                page.common_prefixes
            );
        }
        page_bytes = page.bytes;
        prefix_pages.push(elapsed);

        let key = key_of(round * (OBJECTS / SINGLE_REQUESTS));
        let started = Instant::now();
        let body = s3.get_small(BUCKET, &key)?;
        small_gets.push(started.elapsed().as_secs_f64() * 1e3);
        if body.as_bytes() != BODY {
            bail!("GET s3://{BUCKET}/{key} returned {body:?}");
        }
    }
    let probes = probe(&s3)?;
    server.stop()?;
    Ok(Samples {
        sequential_fill,
        concurrent_fill,
        pages,
        pass_totals,
        prefix_pages,
        root_delimiter_pages,
        small_gets,
        page_bytes,
        probes,
    })
}

/// Median of the samples at `positions` within a repeating cycle of `cycle` samples.
fn median_at(samples: &[f64], cycle: usize, positions: std::ops::Range<usize>) -> f64 {
    let picked: Vec<f64> = samples
        .iter()
        .enumerate()
        .filter(|(index, _)| positions.contains(&(index % cycle)))
        .map(|(_, value)| *value)
        .collect();
    summarize(&picked).map_or(0.0, |summary| summary.p50)
}

/// Where a listing's time goes, from the probes and the position of each request. Each
/// explanation is given only when the numbers show the effect it explains.
fn cost_note(samples: &Samples) -> String {
    let pages = OBJECTS / PAGE;
    let first_pages = median_at(&samples.pages, pages, 0..ENDS);
    let last_pages = median_at(&samples.pages, pages, pages - ENDS..pages);
    let first_folders = median_at(&samples.prefix_pages, FOLDERS, 0..ENDS);
    let last_folders = median_at(&samples.prefix_pages, FOLDERS, FOLDERS - ENDS..FOLDERS);
    let probes = samples.probes;
    let root = summarize(&samples.root_delimiter_pages).map_or(0.0, |summary| summary.p50);
    let mut parts = vec![format!(
        "Where the time goes (medians): a 1-key page (`max-keys=1&start-after=`) right after \
         the first key took {:.2} ms, right after a key near the end {:.2} ms; the first {ENDS} \
         pages of a pass took {first_pages:.1} ms, the last {ENDS} {last_pages:.1} ms.",
        probes.one_key_at_start, probes.one_key_at_end
    )];
    let mut fixes = Vec::new();
    let deep_tokens_cost = probes.one_key_at_end > 3.0 * probes.one_key_at_start;
    if deep_tokens_cost {
        parts.push(
            "A deep token costs more than a shallow one: the store's query (`list_objects_from` \
             in `crates/wharf-store/src/objects.rs`) has two lower bounds on the key \
             (`key >= prefix AND key > token`) and SQLite starts the index range at the prefix."
                .to_owned(),
        );
        fixes.push("one lower bound (the larger of prefix and token)");
    } else {
        parts.push(
            "A deep token costs no more than a shallow one, so a full page's cost is fetching \
             its 1,001 rows and writing their XML."
                .to_owned(),
        );
    }
    parts.push(format!(
        "A prefix listing of one of the first {ENDS} folders took {first_folders:.1} ms, of one \
         of the last {ENDS} {last_folders:.1} ms."
    ));
    if first_folders > 1.5 * last_folders {
        parts.push(
            "The store's query asks for one more row than the page holds, and its upper bound \
             `($4 IS NULL OR key < $4)` is not one SQLite can end an index range with, so when \
             the prefix holds fewer rows than that the query reads on to the end of the bucket."
                .to_owned(),
        );
        fixes.push("a plain `key < $4` (left out of the SQL when there is no upper bound)");
    }
    parts.push(format!(
        "The root listing with a delimiter took {root:.0} ms with `max-keys=1000` and {:.0} ms \
         with `max-keys=100`, for the same {FOLDERS} common prefixes.",
        probes.root_with_max_keys_100
    ));
    if root > 1.5 * probes.root_with_max_keys_100 {
        parts.push(
            "`list_objects` in `crates/wharf-objects/src/list.rs` runs one query per common \
             prefix, and each asks for the rest of the page's rows (up to 1,001) but uses only \
             the first before it skips the prefix."
                .to_owned(),
        );
        fixes.push("with a delimiter, a few rows per query instead of the rest of the page");
    }
    if deep_tokens_cost {
        parts.push(format!(
            "Each of those per-prefix queries also starts its index range at the (empty) prefix \
             and walks past every key of the folders before it: about {} rows for {FOLDERS} \
             folders of {}.",
            FOLDERS * (FOLDERS - 1) / 2 * (OBJECTS / FOLDERS),
            OBJECTS / FOLDERS
        ));
    }
    if !fixes.is_empty() {
        parts.push(format!(
            "Likely fixes: {}; each listing would then cost about what a page of keys costs.",
            fixes.join("; ")
        ));
    }
    parts.join(" ")
}

fn summary_of(samples: &[f64]) -> anyhow::Result<Summary> {
    summarize(samples).context("no samples")
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    let samples = collect(bench)?;
    let pages = summary_of(&samples.pages)?;
    let prefix = summary_of(&samples.prefix_pages)?;
    let root = summary_of(&samples.root_delimiter_pages)?;
    let get = summary_of(&samples.small_gets)?;
    let floor_label = |value: f64| format!("{value:.2} ms (GET of one small object)");
    let row = |metric: String, value: f64, floor: f64| {
        Row::new(metric, format!("{value:.2} ms")).baseline(floor_label(floor), value / floor)
    };
    let root_note = format!(
        "The root listing with a delimiter was timed {ROOT_REQUESTS} times (so its p99 is the \
         slowest of them)."
    );
    let rows = vec![
        row(
            format!("ListObjectsV2 page p50 ({PAGE} keys, continuation token, {OBJECTS} objects)"),
            pages.p50,
            get.p50,
        ),
        row(
            format!("ListObjectsV2 page p99 ({PAGE} keys, continuation token, {OBJECTS} objects)"),
            pages.p99,
            get.p99,
        ),
        row(
            format!(
                "prefix `dNNN/` + delimiter `/` p50 ({} keys)",
                OBJECTS / FOLDERS
            ),
            prefix.p50,
            get.p50,
        ),
        row(
            format!(
                "prefix `dNNN/` + delimiter `/` p99 ({} keys)",
                OBJECTS / FOLDERS
            ),
            prefix.p99,
            get.p99,
        ),
        row(
            format!("delimiter `/` at the root p50 ({FOLDERS} common prefixes)"),
            root.p50,
            get.p50,
        ),
        row(
            format!("delimiter `/` at the root p99 ({FOLDERS} common prefixes)"),
            root.p99,
            get.p99,
        ),
    ];
    let pass_seconds: Vec<String> = samples
        .pass_totals
        .iter()
        .map(|total| format!("{:.2} s", total.as_secs_f64()))
        .collect();
    let sequential_rate = SEQUENTIAL_FILL as f64 / samples.sequential_fill.as_secs_f64();
    let concurrent_rate =
        (OBJECTS - SEQUENTIAL_FILL) as f64 / samples.concurrent_fill.as_secs_f64();
    let notes = vec![
        format!(
            "Filling the bucket: the first {SEQUENTIAL_FILL} PUTs one at a time took {:.1} s \
             ({sequential_rate:.0} PUTs/s, so {OBJECTS} in a row would take about {:.0} s); the \
             other {} with {FILL_IN_FLIGHT} in flight took {:.1} s ({concurrent_rate:.0} PUTs/s). \
             Each PUT fsyncs its blob and folder and commits its metadata and event before it \
             answers.",
            samples.sequential_fill.as_secs_f64(),
            OBJECTS as f64 / sequential_rate,
            OBJECTS - SEQUENTIAL_FILL,
            samples.concurrent_fill.as_secs_f64(),
        ),
        format!(
            "A whole pass over the {OBJECTS} keys ({} pages) took {} ({:.0} keys/s in the \
             slowest); page times: mean {:.2} ms, min {:.2} ms, max {:.2} ms. A full page's \
             answer is {} kB of XML.",
            OBJECTS / PAGE,
            pass_seconds.join(", "),
            samples
                .pass_totals
                .iter()
                .map(|total| OBJECTS as f64 / total.as_secs_f64())
                .fold(f64::INFINITY, f64::min),
            pages.mean,
            pages.min,
            pages.max,
            samples.page_bytes / 1000,
        ),
        root_note,
        cost_note(&samples),
        "The issue sets no goal for listing.".to_owned(),
    ];
    Ok(Section {
        title: "ListObjectsV2 over 100,000 objects".into(),
        method: format!(
            "A fresh server, one bucket filled with {OBJECTS} {}-byte objects under keys \
             `d000/f000.csv` … `d099/f999.csv` ({FOLDERS} folders of {} keys), uploaded with \
             PutObject (bearer token): the first {SEQUENTIAL_FILL} one at a time, the rest \
             {FILL_IN_FLIGHT} at once. Then one unmeasured pass and {PASSES} measured passes \
             through the whole bucket with `list-type=2&max-keys={PAGE}` and continuation tokens \
             (each pass is checked: {OBJECTS} keys, in order, no repeats), timing every page from \
             just before the request to the last byte of its XML answer over a kept-alive \
             connection ({} pages). Then {ROOT_REQUESTS} listings of the root with `delimiter=/` ({FOLDERS} common \
             prefixes), and {SINGLE_REQUESTS} times each a listing of one folder with \
             `prefix=dNNN/&delimiter=/` (folder 000 to 099 in turn) and, as the floor, a \
             GetObject of one small object: what any request to the S3 listener costs. Last, \
             {PROBES} times each, requests that tell the costs apart (see the notes): a 1-key \
             page after the first key and after a key near the end, and the root listing with \
             `max-keys=100`. Ratio = listing ÷ floor.",
            BODY.len(),
            OBJECTS / FOLDERS,
            PASSES * OBJECTS / PAGE,
        ),
        rows,
        notes,
        subcommand: "list",
    })
}

#[cfg(test)]
mod tests {
    use crate::listing::{key_of, median_at};

    #[test]
    fn keys_sort_by_folder_then_file() {
        for (index, expect) in [
            (0, "d000/f000.csv"),
            (999, "d000/f999.csv"),
            (1000, "d001/f000.csv"),
            (99_999, "d099/f999.csv"),
        ] {
            assert_eq!(key_of(index), expect);
        }
        assert!(key_of(999) < key_of(1000));
    }

    #[test]
    fn medians_by_position() {
        let samples = [1.0, 10.0, 100.0, 3.0, 30.0, 300.0];
        assert_eq!(median_at(&samples, 3, 0..1), 1.0);
        assert_eq!(median_at(&samples, 3, 2..3), 100.0);
        assert_eq!(median_at(&samples, 3, 0..3), 10.0);
        assert_eq!(median_at(&[], 3, 0..1), 0.0);
    }
}

//! `wharf deploy DIR`: check the manifest locally (same rules and messages as the
//! server), pack the folder, upload it with a progress bar.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use tokio_util::io::ReaderStream;
use wharf_api::dto::DeployResult;
use wharf_model::manifest::MANIFEST_FILE;

use crate::cli::DeployArgs;
use crate::client::Client;
use crate::commands::print_json;

/// The app name: --name, else `name` in wharf.toml, else the folder's name.
fn app_name(dir: &Path, flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = flag {
        wharf_model::name::validate_app_name(name).map_err(anyhow::Error::msg)?;
        return Ok(name.to_owned());
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    if let Ok(text) = std::fs::read_to_string(&manifest_path) {
        if let Ok(value) = text.parse::<toml::Table>() {
            if let Some(name) = value.get("name").and_then(|n| n.as_str()) {
                return Ok(name.to_owned());
            }
        }
    }
    let canonical = dir.canonicalize()?;
    let folder = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    wharf_model::name::app_name_from_folder(&folder).with_context(|| {
        format!("cannot make an app name from the folder name \"{folder}\"; pass --name NAME")
    })
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    if args.git.is_some() {
        return crate::git::deploy_git(args).await;
    }
    let dir = &args.dir;
    anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
    let name = app_name(dir, args.name.as_deref())?;
    let client = Client::from_env()?;

    let archive = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let pack_dir = dir.clone();
    let pack_target = archive.reopen()?;
    let summary = tokio::task::spawn_blocking(move || {
        wharf_bundle::pack(
            &pack_dir,
            std::io::BufWriter::new(pack_target),
            &wharf_bundle::PackOptions::default(),
        )
    })
    .await??;
    check_manifest_locally(dir)?;

    let size = archive.as_file().metadata()?.len();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )?
            .progress_chars("=> "),
        );
        bar.set_message(format!("Uploading {name}"));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let file = tokio::fs::File::open(archive.path()).await?;
    let progress = bar.clone();
    let stream = ReaderStream::new(file).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            progress.inc(chunk.len() as u64);
        }
    });
    let request = client
        .request(Method::POST, &format!("/apps/{name}/versions"))
        .header("Content-Type", "application/gzip")
        .header("Content-Length", size)
        .body(reqwest::Body::wrap_stream(stream));
    let result = client.send(request).await;
    bar.finish_and_clear();
    let result: DeployResult = crate::client::decode(result?).await?;
    if args.json {
        return print_json(&result);
    }
    let manifest = &result.version.manifest;
    println!(
        "Deployed {} version {} ({} files, {}); kind {}, command {}",
        result.app.name,
        result.version.number,
        summary.files,
        wharf_model::duration::format_size(summary.bytes),
        manifest.get("kind").and_then(|k| k.as_str()).unwrap_or("?"),
        manifest
            .get("command")
            .map(|c| c.to_string())
            .unwrap_or_default(),
    );
    if manifest.get("kind").and_then(|k| k.as_str()) == Some("service") {
        let min_replicas = manifest
            .pointer("/service/min_replicas")
            .and_then(|v| v.as_u64())
            .unwrap_or(1);
        let url = format!("{}/apps/{}/", client.base, result.app.name);
        if min_replicas == 0 {
            println!("It starts on its first request: {url}");
        } else if !args.no_wait {
            crate::services::wait_until_ready(&client, &result.app.name, result.version.number)
                .await?;
            println!("Ready at {url}");
        } else {
            println!(
                "Starting; it will be at {url} (`wharf ps {}` shows its replicas)",
                result.app.name
            );
        }
    }
    Ok(())
}

/// Validates wharf.toml here first, so mistakes show before anything is uploaded.
fn check_manifest_locally(dir: &Path) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(dir.join(MANIFEST_FILE)) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).context("cannot read wharf.toml"),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    files.sort();
    let label = dir.join(MANIFEST_FILE).display().to_string();
    wharf_model::manifest::load_manifest(&label, text.as_deref(), &files)
        .map(|_| ())
        .map_err(|errors| anyhow::anyhow!("{errors}"))
}

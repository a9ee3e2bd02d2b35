//! `wharf invoke APP [PATH]` (a call through the proxy, or an asynchronous invocation)
//! and `wharf invocations APP` (the audit list).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use clap::Args;
use reqwest::Method;
use wharf_api::dto::{InvocationAccepted, InvocationInfo};

use crate::client::{decode, Client};
use crate::commands::{encode_segment, format_millis, print_json, print_table, short_time};

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The service app.
    pub app: String,
    /// Path (and query) inside the app, e.g. /predict (default /).
    pub path: Option<String>,
    /// The request body.
    #[arg(long, short = 'd', conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the request body from a file ("-": standard input).
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// Content-Type of the body (default: application/json when the body is JSON,
    /// otherwise text/plain for --data and application/octet-stream for --data-file).
    #[arg(long)]
    pub content_type: Option<String>,
    /// HTTP method (default: POST with a body, GET without; POST for --async).
    #[arg(long, short = 'X')]
    pub method: Option<String>,
    /// Queue an asynchronous invocation (stored, retried, audited) instead of calling now.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// With --async: print the invocation's id and return without waiting.
    #[arg(long, requires = "asynchronous")]
    pub no_wait: bool,
    /// With --async: a URL that receives the result as JSON.
    #[arg(long, requires = "asynchronous")]
    pub callback: Option<String>,
    /// Longest wait for an asynchronous result, e.g. 30s, 10m.
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    /// Print status, headers and body as JSON (the invocation, with --async).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InvocationsArgs {
    /// The service app.
    pub app: String,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

/// The body and its content type, from --data / --data-file.
fn request_body(args: &InvokeArgs) -> anyhow::Result<Option<(Vec<u8>, String)>> {
    let (bytes, fallback) = match (&args.data, &args.data_file) {
        (Some(text), _) => (text.clone().into_bytes(), "text/plain"),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("cannot read the request body from standard input")?;
            (bytes, "application/octet-stream")
        }
        (None, Some(path)) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read the request body from {}", path.display()))?,
            "application/octet-stream",
        ),
        (None, None) => return Ok(None),
    };
    let content_type = match &args.content_type {
        Some(content_type) => content_type.clone(),
        None if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() => {
            "application/json".to_owned()
        }
        None => fallback.to_owned(),
    };
    Ok(Some((bytes, content_type)))
}

pub async fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_env()?;
    let path = wharf_model::invocation::check_path(args.path.as_deref())
        .map_err(|problem| anyhow::anyhow!("{problem}"))?;
    let body = request_body(&args)?;
    if args.asynchronous {
        return invoke_async(&client, &args, &path, body).await;
    }
    let method = match &args.method {
        Some(method) => Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("\"{method}\" is not an HTTP method"))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let url = format!("{}/apps/{}{path}", client.base, encode_segment(&args.app));
    let http = reqwest::Client::new();
    let mut request = http.request(method, &url).bearer_auth(client.token());
    if let Some((bytes, content_type)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
    }
    let response = request
        .send()
        .await
        .map_err(|error| client.transport_error(error))?;
    let status = response.status();
    let headers: std::collections::BTreeMap<String, String> = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("the answer of {url} broke off"))?;
    if args.json {
        let (text, base64) = wharf_control::text_or_base64(bytes.to_vec());
        print_json(&serde_json::json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": text,
            "body_base64": base64,
        }))?;
    } else {
        std::io::stdout().write_all(&bytes)?;
        if !bytes.ends_with(b"\n") && !bytes.is_empty() {
            println!();
        }
    }
    if status.is_client_error() || status.is_server_error() {
        eprintln!("{} answered HTTP {status}", args.app);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn invoke_async(
    client: &Client,
    args: &InvokeArgs,
    path: &str,
    body: Option<(Vec<u8>, String)>,
) -> anyhow::Result<ExitCode> {
    let timeout = wharf_model::duration::parse_duration(&args.timeout)
        .map_err(|problem| anyhow::anyhow!("--timeout: {problem}"))?;
    let mut query = vec![("path", path.to_owned())];
    if let Some(method) = &args.method {
        query.push(("method", method.clone()));
    }
    if let Some(callback) = &args.callback {
        query.push(("callback", callback.clone()));
    }
    let mut request = client
        .request(
            Method::POST,
            &format!("/apps/{}/invocations", encode_segment(&args.app)),
        )
        .query(&query);
    if let Some((bytes, content_type)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
    }
    let accepted: InvocationAccepted = decode(client.send(request).await?).await?;
    if args.no_wait {
        if args.json {
            print_json(&accepted)?;
        } else {
            println!("{}", accepted.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "Queued invocation {} of {}; waiting for its result (Ctrl-C stops waiting, not the invocation).",
        accepted.id, args.app
    );
    let deadline = Instant::now() + timeout;
    let info = loop {
        let info: InvocationInfo = client
            .get(&format!("/invocations/{}", encode_segment(&accepted.id)))
            .await?;
        if matches!(info.state.as_str(), "succeeded" | "failed") {
            break info;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "invocation {} is still {} after {}; see it later with `wharf invocations {}`",
            accepted.id,
            info.state,
            args.timeout,
            args.app
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if args.json {
        print_json(&info)?;
    } else if let Some(response) = &info.response {
        let bytes = match (&response.body.body, &response.body.body_base64) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .context("the server sent a body that is not base64")?,
            (None, None) => Vec::new(),
        };
        std::io::stdout().write_all(&bytes)?;
        if !bytes.ends_with(b"\n") && !bytes.is_empty() {
            println!();
        }
        if response.truncated {
            eprintln!("(the response was longer than the server keeps; this is its beginning)");
        }
    }
    if info.state == "failed" {
        eprintln!(
            "invocation {} failed after {} attempt(s): {}",
            info.id,
            info.attempts,
            info.error.as_deref().unwrap_or("no reason recorded")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of a body for a table.
fn cell(text: Option<&str>) -> String {
    let text = text.unwrap_or("").replace(['\n', '\r', '\t'], " ");
    let mut cut: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        cut.push('…');
    }
    cut
}

pub async fn invocations(args: InvocationsArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let list: Vec<InvocationInfo> = client
        .get(&format!(
            "/apps/{}/invocations?limit={}",
            encode_segment(&args.app),
            args.limit.clamp(1, 1000)
        ))
        .await?;
    if args.json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!(
            "No invocations of {} yet. Queue one with `wharf invoke {} /PATH --async --data '{{...}}'`.",
            args.app, args.app
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|info| {
            vec![
                info.id.clone(),
                short_time(&info.created_at),
                info.invoked_by.clone(),
                format!("{} {}", info.method, info.path),
                info.state.clone(),
                info.response
                    .as_ref()
                    .map(|response| response.status.to_string())
                    .unwrap_or_default(),
                info.duration_ms.map(format_millis).unwrap_or_default(),
                cell(info.request.preview.as_deref()),
                cell(
                    info.response
                        .as_ref()
                        .and_then(|response| response.body.preview.as_deref()),
                ),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "CREATED", "BY", "REQUEST", "STATE", "HTTP", "TOOK", "SENT", "ANSWERED",
        ],
        &rows,
    );
    Ok(())
}

//! The API client of the CLI: where the server is, the token, and errors a person can act on.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cli::LoginArgs;

/// Saved by `wharf login`; WHARF_URL and WHARF_TOKEN override it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub token: String,
}

fn credentials_path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("wharf/credentials.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set; set WHARF_URL and WHARF_TOKEN instead"))?;
    Ok(PathBuf::from(home).join(".config/wharf/credentials.json"))
}

fn load_credentials() -> anyhow::Result<Credentials> {
    let saved: Option<Credentials> = match credentials_path() {
        Ok(path) => match std::fs::read_to_string(&path) {
            Ok(text) => Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not valid; run `wharf login URL` again",
                    path.display()
                )
            })?),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let url = std::env::var("WHARF_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| saved.as_ref().map(|c| c.url.clone()));
    let token = std::env::var("WHARF_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| saved.as_ref().map(|c| c.token.clone()));
    match (url, token) {
        (Some(url), Some(token)) => Ok(Credentials { url, token }),
        _ => Err(anyhow!(
            "not logged in: run `wharf login URL` (or set WHARF_URL and WHARF_TOKEN)"
        )),
    }
}

/// A connection to one Wharf server.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn from_env() -> anyhow::Result<Client> {
        let credentials = load_credentials()?;
        Client::new(&credentials.url, &credentials.token)
    }

    pub fn new(url: &str, token: &str) -> anyhow::Result<Client> {
        let base = url.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "\"{url}\" is not a server URL; write it like http://127.0.0.1:8080"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Client {
            base,
            token: token.trim().to_owned(),
            http,
        })
    }

    /// The API token (the S3 listener accepts it as a bearer token too).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request; turns transport failures and error statuses into messages.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.status_error(response).await)
    }

    /// Sends a request; turns only transport failures into messages (the caller looks at
    /// the status).
    pub async fn send_raw(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        request
            .send()
            .await
            .map_err(|error| self.transport_error(error))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.request(Method::GET, path)).await?;
        decode(response).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .send(self.request(Method::POST, path).json(body))
            .await?;
        decode(response).await
    }

    pub fn transport_error(&self, error: reqwest::Error) -> anyhow::Error {
        if error.is_connect() {
            anyhow!(
                "cannot reach the Wharf server at {}: is `wharf server` running there? \
                 (set WHARF_URL or run `wharf login URL` to use another server)",
                self.base
            )
        } else if error.is_timeout() {
            anyhow!("the Wharf server at {} did not answer in time", self.base)
        } else {
            anyhow!("request to {} failed: {error}", self.base)
        }
    }

    async fn status_error(&self, response: Response) -> anyhow::Error {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<wharf_api::dto::ErrorBody>(&body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| body.trim().chars().take(500).collect());
        match status {
            StatusCode::UNAUTHORIZED => anyhow!(
                "the server at {} rejected the token: {message}; run `wharf login {}` with a valid token",
                self.base,
                self.base
            ),
            _ if message.is_empty() => anyhow!("the server answered {status}"),
            _ => anyhow!("{message}"),
        }
    }
}

pub async fn decode<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let url = response.url().clone();
    let bytes = response.bytes().await?;
    serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from {url}"))
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let token = match (args.token, args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?,
        (None, None) => {
            eprint!("API token: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    let token = token.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the token is empty");
    let client = Client::new(&args.url, &token)?;
    let me: wharf_api::dto::WhoAmI = client.get("/whoami").await?;
    let path = credentials_path()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let credentials = Credentials {
        url: client.base.clone(),
        token,
    };
    crate::server::write_secret_file(&path, &serde_json::to_string_pretty(&credentials)?)?;
    println!(
        "Logged in to {} as {} ({}); credentials saved to {}",
        client.base,
        me.user,
        me.role,
        path.display()
    );
    Ok(())
}

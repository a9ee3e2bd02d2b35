//! `wharf deploy --git URL`: an app whose files the server fetches from a git repository
//! at each run start. Credentials are read here from an environment variable or a file
//! (never from the command line, where `ps` and shell history would show them) and sent
//! once; the server keeps them encrypted.

use anyhow::Context;
use wharf_api::dto::{GitDeployRequest, GitDeployResult};

use crate::cli::DeployArgs;
use crate::client::Client;
use crate::commands::print_json;

fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    anyhow::ensure!(
        !text.trim().is_empty(),
        "the {what} file {} is empty",
        path.display()
    );
    Ok(text)
}

pub async fn deploy_git(args: DeployArgs) -> anyhow::Result<()> {
    let url = args.git.clone().unwrap_or_default();
    if let Some(name) = &args.name {
        wharf_model::name::validate_app_name(name).map_err(anyhow::Error::msg)?;
    }
    let token = match (&args.token_env, &args.token_file) {
        (Some(variable), _) => Some(
            std::env::var(variable)
                .ok()
                .filter(|value| !value.trim().is_empty())
                .with_context(|| {
                    format!("--token-env {variable}: that environment variable is not set or empty")
                })?
                .trim()
                .to_owned(),
        ),
        (None, Some(path)) => Some(read_secret_file(path, "token")?.trim().to_owned()),
        (None, None) => None,
    };
    let ssh_key = match &args.ssh_key {
        Some(path) => Some(read_secret_file(path, "SSH deploy key")?),
        None => None,
    };
    let client = Client::from_env()?;
    let request = GitDeployRequest {
        name: args.name.clone(),
        url: url.clone(),
        git_ref: args.git_ref.clone(),
        path: args.path.clone(),
        token,
        ssh_key,
    };
    eprintln!("Fetching {url} on the server...");
    let result: GitDeployResult = client.post("/git-apps", &request).await?;
    if args.json {
        return print_json(&result);
    }
    let commit = result.git.last_commit.as_deref().unwrap_or("?");
    println!(
        "Deployed {} version {} from {} {} (commit {}); each run fetches {} again",
        result.app.name,
        result.version.number,
        result.git.url,
        result.git.git_ref,
        commit.get(..12).unwrap_or(commit),
        result.git.git_ref,
    );
    Ok(())
}

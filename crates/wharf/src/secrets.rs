//! `wharf secret set|list|delete`: named secrets that apps receive as environment
//! variables (`KEY = { secret = "NAME" }` in the manifest's `[env]`).

use std::io::{IsTerminal, Read};
use std::path::Path;

use reqwest::{Method, StatusCode};
use wharf_api::dto::{SecretInfo, SecretSetRequest};

use crate::cli::SecretCommand;
use crate::client::Client;
use crate::commands::{print_json, print_table, short_time};

pub async fn secret(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Set { name, from_file } => set(&name, from_file.as_deref()).await,
        SecretCommand::List { json } => list(json).await,
        SecretCommand::Delete { name, force } => delete(&name, force).await,
    }
}

/// The value: the file's whole content (`--from-file`), else standard input with one
/// trailing newline removed, else typed once without echo on a terminal.
fn read_value(name: &str, from_file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(path) = from_file {
        let bytes = std::fs::read(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        return String::from_utf8(bytes).map_err(|_| {
            anyhow::anyhow!(
                "{} is not UTF-8 text; a secret becomes an environment variable (base64-encode binary values)",
                path.display()
            )
        });
    }
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value for secret {name}: "))?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| {
                anyhow::anyhow!("cannot read the value from standard input: {error}")
            })?;
        text.strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_owned()
    };
    anyhow::ensure!(
        !value.is_empty(),
        "the value is empty; nothing was set (type it, pipe it in with \
         `printf '%s' \"$VALUE\" | wharf secret set {name}`, or use --from-file)"
    );
    Ok(value)
}

async fn set(name: &str, from_file: Option<&Path>) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let value = read_value(name, from_file)?;
    let response = client
        .send(
            client
                .request(Method::PUT, &format!("/secrets/{name}"))
                .json(&SecretSetRequest { value }),
        )
        .await?;
    if response.status() == StatusCode::CREATED {
        println!("Created secret {name}");
    } else {
        println!("Updated secret {name}; apps get the new value when a run or replica next starts");
    }
    Ok(())
}

async fn list(json: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let secrets: Vec<SecretInfo> = client.get("/secrets").await?;
    if json {
        return print_json(&secrets);
    }
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|secret| {
            vec![
                secret.name.clone(),
                short_time(&secret.updated_at),
                secret.updated_by.clone(),
                match secret.used_by.is_empty() {
                    true => "-".to_owned(),
                    false => secret.used_by.join(","),
                },
            ]
        })
        .collect();
    print_table(&["NAME", "UPDATED", "BY", "USED BY"], &rows);
    Ok(())
}

async fn delete(name: &str, force: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let path = match force {
        true => format!("/secrets/{name}?force=true"),
        false => format!("/secrets/{name}"),
    };
    client.send(client.request(Method::DELETE, &path)).await?;
    println!("Deleted secret {name}; apps that name it fail to start until it is set again");
    Ok(())
}

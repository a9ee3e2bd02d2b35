//! `wharf user add|list|passwd|delete`: local users, for admins.

use std::io::{IsTerminal, Read, Write};

use reqwest::Method;
use wharf_api::dto::{PasswordChanged, PasswordRequest, UserCreateRequest, UserInfo};

use crate::cli::UserCommand;
use crate::client::Client;
use crate::commands::{print_json, print_table, short_time};

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            password_stdin,
            no_password,
            json,
        } => add(&name, &role, password_stdin, no_password, json).await,
        UserCommand::List { json } => list(json).await,
        UserCommand::Passwd {
            name,
            password_stdin,
        } => passwd(&name, password_stdin).await,
        UserCommand::Delete { name, yes } => delete(&name, yes).await,
    }
}

/// Where a new password comes from.
enum NewPassword {
    /// Typed or piped in by the person running the command.
    Given(String),
    /// Made here; printed once.
    Generated(String),
}

/// The password from standard input (`--password-stdin`, one trailing newline removed),
/// else typed twice without echo on a terminal, else generated.
fn new_password(name: &str, from_stdin: bool) -> anyhow::Result<NewPassword> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| {
                anyhow::anyhow!("cannot read the password from standard input: {error}")
            })?;
        let password = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_owned();
        anyhow::ensure!(
            !password.is_empty(),
            "standard input was empty; pipe the password in, e.g. `printf '%s' \"$PASSWORD\" | wharf user add {name} --password-stdin`"
        );
        return Ok(NewPassword::Given(password));
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))?;
        let second = rpassword::prompt_password("Type it again: ")?;
        anyhow::ensure!(
            first == second,
            "the two passwords differ; nothing was changed"
        );
        anyhow::ensure!(
            !first.is_empty(),
            "the password is empty; nothing was changed (leave the terminal and run the \
             command without one to have a password generated)"
        );
        return Ok(NewPassword::Given(first));
    }
    Ok(NewPassword::Generated(wharf_auth::generate_password()))
}

fn announce_generated(name: &str, password: &NewPassword) {
    if let NewPassword::Generated(password) = password {
        println!("Password for {name} (shown once; pass it on safely):");
        println!();
        println!("    {password}");
        println!();
    }
}

async fn add(
    name: &str,
    role: &str,
    password_stdin: bool,
    no_password: bool,
    json: bool,
) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let password = if no_password {
        None
    } else {
        Some(new_password(name, password_stdin)?)
    };
    let request = UserCreateRequest {
        name: name.to_owned(),
        role: Some(role.to_owned()),
        password: password.as_ref().map(|p| match p {
            NewPassword::Given(text) | NewPassword::Generated(text) => text.clone(),
        }),
    };
    let user: UserInfo = client.post("/users", &request).await?;
    if json {
        return print_json(&user);
    }
    println!("Added {} ({})", user.name, user.role);
    if let Some(password) = &password {
        announce_generated(name, password);
    }
    Ok(())
}

async fn list(json: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let users: Vec<UserInfo> = client.get("/users").await?;
    if json {
        return print_json(&users);
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|user| {
            vec![
                user.name.clone(),
                user.role.clone(),
                if user.has_password { "yes" } else { "no" }.into(),
                user.active_sessions.to_string(),
                short_time(&user.created_at),
            ]
        })
        .collect();
    print_table(&["NAME", "ROLE", "PASSWORD", "SESSIONS", "CREATED"], &rows);
    Ok(())
}

async fn passwd(name: &str, password_stdin: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let password = new_password(name, password_stdin)?;
    let text = match &password {
        NewPassword::Given(text) | NewPassword::Generated(text) => text.clone(),
    };
    let response = client
        .send(
            client
                .request(Method::PUT, &format!("/users/{name}/password"))
                .json(&PasswordRequest { password: text }),
        )
        .await?;
    let changed: PasswordChanged = crate::client::decode(response).await?;
    println!(
        "Changed the password of {}; ended {} browser session{}.",
        changed.user,
        changed.sessions_ended,
        if changed.sessions_ended == 1 { "" } else { "s" }
    );
    announce_generated(name, &password);
    Ok(())
}

async fn delete(name: &str, yes: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    if !yes {
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "deleting removes the user \"{name}\" with its API tokens, sessions and S3 keys; add --yes to confirm"
        );
        eprint!("Delete user \"{name}\" with its API tokens, sessions and S3 keys? Type its name to confirm: ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        anyhow::ensure!(answer.trim() == name, "not deleted");
    }
    client
        .send(client.request(Method::DELETE, &format!("/users/{name}")))
        .await?;
    println!("Deleted user {name}");
    Ok(())
}

//! `wharf bucket ...` and `wharf s3 keys ...`: buckets and S3 access keys through the API.

use reqwest::Method;
use wharf_api::dto::{
    BucketCreateRequest, BucketInfo, BucketUpdateRequest, S3KeyCreateRequest, S3KeyCreated,
    S3KeyInfo,
};

use crate::cli::{BucketCommand, KeysCommand};
use crate::client::Client;
use crate::commands::{encode_segment, print_json, print_table, short_time};

pub async fn bucket(command: BucketCommand) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    match command {
        BucketCommand::Create {
            name,
            public_read,
            json,
        } => {
            let info: BucketInfo = client
                .post("/buckets", &BucketCreateRequest { name, public_read })
                .await?;
            if json {
                return print_json(&info);
            }
            println!(
                "Created bucket {}{}",
                info.name,
                if info.public_read {
                    " (anyone may read its objects)"
                } else {
                    ""
                }
            );
        }
        BucketCommand::Ls { json } => {
            let buckets: Vec<BucketInfo> = client.get("/buckets").await?;
            if json {
                return print_json(&buckets);
            }
            if buckets.is_empty() {
                println!("No buckets yet; create one with `wharf bucket create NAME`.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = buckets
                .iter()
                .map(|bucket| {
                    vec![
                        bucket.name.clone(),
                        if bucket.public_read { "yes" } else { "no" }.to_owned(),
                        bucket.owner.clone(),
                        short_time(&bucket.created_at),
                    ]
                })
                .collect();
            print_table(&["NAME", "PUBLIC READ", "OWNER", "CREATED"], &rows);
        }
        BucketCommand::Set { name, public_read } => {
            let response = client
                .send(
                    client
                        .request(
                            Method::PATCH,
                            &format!("/buckets/{}", encode_segment(&name)),
                        )
                        .json(&BucketUpdateRequest { public_read }),
                )
                .await?;
            let info: BucketInfo = crate::client::decode(response).await?;
            println!(
                "Bucket {} is {}",
                info.name,
                if info.public_read {
                    "readable by anyone"
                } else {
                    "private"
                }
            );
        }
        BucketCommand::Rm { name } => {
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/buckets/{}", encode_segment(&name)),
                ))
                .await?;
            println!("Deleted bucket {name}");
        }
    }
    Ok(())
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    match command {
        KeysCommand::Create { description, json } => {
            let created: S3KeyCreated = client
                .post("/s3/keys", &S3KeyCreateRequest { description })
                .await?;
            if json {
                return print_json(&created);
            }
            let endpoint = crate::s3client::endpoint_for(&client).await?;
            println!("Access key: {}", created.access_key);
            println!("Secret key: {}", created.secret_key);
            println!("The secret is shown only now; store it. For aws-cli, boto3 and paws:");
            println!();
            match &endpoint {
                Some(endpoint) => println!("export AWS_ENDPOINT_URL={endpoint}"),
                None => println!("# the server's S3 listener is off (s3_listen = \"off\")"),
            }
            println!("export AWS_ACCESS_KEY_ID={}", created.access_key);
            println!("export AWS_SECRET_ACCESS_KEY={}", created.secret_key);
            println!("export AWS_DEFAULT_REGION=us-east-1");
        }
        KeysCommand::List { json } => {
            let keys: Vec<S3KeyInfo> = client.get("/s3/keys").await?;
            if json {
                return print_json(&keys);
            }
            if keys.is_empty() {
                println!("No S3 keys yet; create one with `wharf s3 keys create`.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|key| {
                    vec![
                        key.access_key.clone(),
                        short_time(&key.created_at),
                        key.revoked_at
                            .as_deref()
                            .map(short_time)
                            .unwrap_or_else(|| "-".into()),
                        key.description.clone(),
                    ]
                })
                .collect();
            print_table(&["ACCESS KEY", "CREATED", "REVOKED", "DESCRIPTION"], &rows);
        }
        KeysCommand::Revoke { access_key } => {
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/s3/keys/{}", encode_segment(&access_key)),
                ))
                .await?;
            println!("Revoked {access_key}; requests signed with it now fail.");
        }
    }
    Ok(())
}

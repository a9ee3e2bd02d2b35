//! `wharf ls`: the buckets, or the objects of a bucket the way `aws s3 ls` shows them.

use wharf_api::dto::BucketInfo;

use crate::cli::LsArgs;
use crate::client::Client;
use crate::commands::{print_json, short_time};
use crate::s3client::{ListedObject, S3Client};

/// The bucket and prefix of `s3://bucket/prefix` (or a bare bucket name).
fn target(text: &str) -> anyhow::Result<(String, String)> {
    let rest = text.strip_prefix("s3://").unwrap_or(text);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(
        !bucket.is_empty(),
        "\"{text}\" names no bucket; write s3://BUCKET or s3://BUCKET/PREFIX"
    );
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// An object line: date, time, size, and the name after the listed prefix's folder.
fn object_line(object: &ListedObject, shown_from: usize) -> String {
    format!(
        "{:<19} {:>10} {}",
        short_time(&object.last_modified),
        object.size,
        object.key.get(shown_from..).unwrap_or(&object.key)
    )
}

fn prefix_line(prefix: &str, shown_from: usize) -> String {
    format!(
        "{:>30} {}",
        "PRE",
        prefix.get(shown_from..).unwrap_or(prefix)
    )
}

pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let Some(text) = args.target else {
        return list_buckets(args.json).await;
    };
    let (bucket, prefix) = target(&text)?;
    let client = S3Client::from_env().await?;
    // Like `aws s3 ls`: names are shown from after the prefix's last '/'.
    let shown_from = if args.recursive {
        0
    } else {
        prefix.rfind('/').map_or(0, |at| at + 1)
    };
    let delimiter = (!args.recursive).then_some("/");
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_page(&bucket, &prefix, delimiter, token.as_deref())
            .await?;
        if args.json {
            objects.extend(page.objects);
            prefixes.extend(page.prefixes);
        } else {
            for common in &page.prefixes {
                println!("{}", prefix_line(common, shown_from));
            }
            for object in &page.objects {
                println!("{}", object_line(object, shown_from));
            }
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    if args.json {
        print_json(&serde_json::json!({
            "bucket": bucket,
            "prefix": prefix,
            "prefixes": prefixes,
            "objects": objects,
        }))?;
    }
    Ok(())
}

async fn list_buckets(json: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let buckets: Vec<BucketInfo> = client.get("/buckets").await?;
    if json {
        return print_json(&buckets);
    }
    for bucket in &buckets {
        println!("{} {}", short_time(&bucket.created_at), bucket.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let check = |text: &str, bucket: &str, prefix: &str| {
            assert_eq!(
                target(text).expect("parses"),
                (bucket.to_owned(), prefix.to_owned()),
                "{text}"
            );
        };
        check("s3://b", "b", "");
        check("s3://b/", "b", "");
        check("s3://b/dir/", "b", "dir/");
        check("s3://b/dir/x", "b", "dir/x");
        check("b", "b", "");
        assert!(target("s3://").is_err());
    }

    #[test]
    fn lines_look_like_aws_s3_ls() {
        let object = ListedObject {
            key: "dir/a.csv".into(),
            size: 1234,
            etag: "x".into(),
            last_modified: "2024-05-01T12:30:45.000Z".into(),
        };
        assert_eq!(
            object_line(&object, 4),
            "2024-05-01 12:30:45       1234 a.csv"
        );
        assert_eq!(
            object_line(&object, 0),
            "2024-05-01 12:30:45       1234 dir/a.csv"
        );
        assert_eq!(
            prefix_line("dir/sub/", 4),
            "                           PRE sub/"
        );
    }
}

//! Listing objects (ListObjectsV2 semantics): prefix, delimiter with common prefixes,
//! start-after, continuation tokens and max-keys, as indexed range queries. A common
//! prefix costs one query to skip past all its keys, never a walk over them.

use wharf_store::objects::prefix_upper_bound;
use wharf_store::ObjectRow;

use crate::error::{ObjectError, ObjectResult};
use crate::service::Objects;

pub const MAX_KEYS_LIMIT: usize = 1000;
/// Rows a delimited listing asks for after a common prefix (doubling while rows are keys).
const FIRST_DELIMITED_BATCH: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub start_after: Option<String>,
    pub continuation_token: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectRow>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// Set when truncated: pass it as the next request's continuation token.
    pub next_token: Option<String>,
}

/// Where a listing resumes: after a key, or after every key of a common prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    AfterKey(String),
    AfterPrefix(String),
}

impl Resume {
    fn token(&self) -> String {
        match self {
            Resume::AfterKey(key) => format!("k{}", hex::encode(key)),
            Resume::AfterPrefix(prefix) => format!("p{}", hex::encode(prefix)),
        }
    }

    fn parse(token: &str) -> ObjectResult<Resume> {
        let invalid = || {
            ObjectError::InvalidArgument(
                "the continuation token is not one this server returned".into(),
            )
        };
        let (kind, rest) = token.split_at_checked(1).ok_or_else(invalid)?;
        let text = hex::decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(invalid)?;
        match kind {
            "k" => Ok(Resume::AfterKey(text)),
            "p" => Ok(Resume::AfterPrefix(text)),
            _ => Err(invalid()),
        }
    }
}

impl Objects {
    pub async fn list_objects(
        &self,
        bucket: &str,
        request: &ListRequest,
    ) -> ObjectResult<ListPage> {
        self.bucket(bucket).await?;
        let store = self.store();
        let max_keys = request.max_keys.min(MAX_KEYS_LIMIT);
        let prefix = request.prefix.as_str();
        let delimiter = request.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut resume = match (&request.continuation_token, &request.start_after) {
            (Some(token), _) => Some(Resume::parse(token)?),
            (None, Some(after)) if !after.is_empty() => Some(Resume::AfterKey(after.clone())),
            _ => None,
        };
        // Entries sort after the marker: a common prefix at or before it (a v1 client
        // passing NextMarker = "dir/") is skipped whole, or paging would repeat it forever.
        let marker = match &resume {
            Some(Resume::AfterKey(key)) => Some(key.clone()),
            _ => None,
        };
        let mut page = ListPage::default();
        if max_keys == 0 {
            return Ok(page);
        }
        let mut count = 0usize;
        // With a delimiter, a row may start a common prefix whose other rows the next query
        // skips: fetch a few rows at first, and more each time a batch held only keys.
        let mut batch = if delimiter.is_some() {
            FIRST_DELIMITED_BATCH
        } else {
            max_keys + 1
        };
        'fill: loop {
            let (lower, inclusive) = match &resume {
                None => (String::new(), true),
                Some(Resume::AfterKey(key)) => (key.clone(), false),
                Some(Resume::AfterPrefix(common)) => match prefix_upper_bound(common) {
                    Some(upper) => (upper, true),
                    None => break 'fill,
                },
            };
            let want = batch.min(max_keys - count + 1) as i64;
            let rows = store
                .list_objects_from(bucket, prefix, &lower, inclusive, want)
                .await?;
            if rows.is_empty() {
                break;
            }
            let fetched = rows.len();
            for row in rows {
                let common = delimiter.and_then(|delimiter| {
                    let rest = row.key.get(prefix.len()..)?;
                    let at = rest.find(delimiter)?;
                    Some(row.key[..prefix.len() + at + delimiter.len()].to_owned())
                });
                if let Some(common) = &common {
                    if marker.as_ref().is_some_and(|marker| common <= marker) {
                        resume = Some(Resume::AfterPrefix(common.clone()));
                        batch = FIRST_DELIMITED_BATCH;
                        continue 'fill;
                    }
                }
                if count == max_keys {
                    page.truncated = true;
                    break 'fill;
                }
                match common {
                    Some(common) => {
                        page.common_prefixes.push(common.clone());
                        count += 1;
                        resume = Some(Resume::AfterPrefix(common));
                        // Skip the rest of this prefix with a fresh query.
                        batch = FIRST_DELIMITED_BATCH;
                        continue 'fill;
                    }
                    None => {
                        resume = Some(Resume::AfterKey(row.key.clone()));
                        page.objects.push(row);
                        count += 1;
                    }
                }
            }
            if (fetched as i64) < want {
                break;
            }
            batch = (batch * 2).min(MAX_KEYS_LIMIT + 1);
        }
        if page.truncated {
            page.next_token = resume.as_ref().map(Resume::token);
        }
        Ok(page)
    }
}

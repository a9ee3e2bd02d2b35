//! Talking to a test server's S3 listener with its admin API token (`Authorization:
//! Bearer`, which the listener accepts besides SigV4).

use super::Server;

impl Server {
    fn s3_request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http()
            .request(method, format!("{}/{path}", self.s3_url()))
            .bearer_auth(&self.token)
    }

    pub fn s3_create_bucket(&self, bucket: &str) {
        let response = self
            .s3_request(reqwest::Method::PUT, bucket)
            .send()
            .expect("PUT bucket");
        // 409 BucketAlreadyOwnedByYou: a deploy created it (deploys create named buckets).
        assert!(
            response.status().is_success() || response.status().as_u16() == 409,
            "create bucket {bucket}: {}",
            response.status()
        );
    }

    pub fn s3_put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let response = self
            .s3_request(reqwest::Method::PUT, &format!("{bucket}/{key}"))
            .body(body)
            .send()
            .expect("PUT object");
        assert!(
            response.status().is_success(),
            "put s3://{bucket}/{key}: {} {}\nserver log:\n{}",
            response.status(),
            response.text().unwrap_or_default(),
            self.server_log()
        );
    }

    /// The object's bytes, None when it does not exist.
    pub fn s3_get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let response = self
            .s3_request(reqwest::Method::GET, &format!("{bucket}/{key}"))
            .send()
            .expect("GET object");
        if response.status().as_u16() == 404 {
            return None;
        }
        assert!(
            response.status().is_success(),
            "get s3://{bucket}/{key}: {}",
            response.status()
        );
        Some(response.bytes().expect("body").to_vec())
    }

    /// Creates an S3 key with `wharf s3 keys create` and returns what it printed as
    /// `export NAME=value` lines, by name (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
    pub fn s3_key_exports(&self, description: &str) -> std::collections::HashMap<String, String> {
        let printed = self.cli_ok(&["s3", "keys", "create", "--description", description]);
        let exports: std::collections::HashMap<String, String> = printed
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        assert!(
            exports.contains_key("AWS_ACCESS_KEY_ID")
                && exports.contains_key("AWS_SECRET_ACCESS_KEY"),
            "no key in:\n{printed}"
        );
        exports
    }

    /// Every key in a bucket (up to 1000), from ListObjectsV2's XML.
    pub fn s3_keys(&self, bucket: &str) -> Vec<String> {
        let text = self
            .s3_request(reqwest::Method::GET, &format!("{bucket}?list-type=2"))
            .send()
            .expect("list")
            .text()
            .expect("list body");
        text.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(|key| {
                key.replace("&amp;", "&")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
            })
            .collect()
    }
}

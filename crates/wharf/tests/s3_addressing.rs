//! Virtual-host style addressing on the S3 listener (`s3_base_domain`), beside path style.

mod common;

use common::Server;

#[test]
fn buckets_are_reachable_as_subdomains_of_the_base_domain_and_by_path() {
    let server = Server::start_with("s3_base_domain = \"s3.wharf.test\"\n");
    let client = server.http();
    let send = |method: reqwest::Method, host: &str, path: &str, body: &str| {
        client
            .request(method, format!("{}{path}", server.s3_url()))
            .header("Host", host)
            .bearer_auth(&server.token)
            .body(body.to_owned())
            .send()
            .expect("request")
    };
    let port = server.s3_port;
    // Path style, by IP address (with the port) and by the base domain.
    let created = send(
        reqwest::Method::PUT,
        &format!("127.0.0.1:{port}"),
        "/reports",
        "",
    );
    assert!(created.status().is_success(), "{}", created.status());
    // Virtual-host style, with and without the port, in any letter case.
    let put = send(
        reqwest::Method::PUT,
        &format!("reports.s3.wharf.test:{port}"),
        "/2026/q3.csv",
        "a,b\n",
    );
    assert!(
        put.status().is_success(),
        "{}",
        put.text().unwrap_or_default()
    );
    let got = send(
        reqwest::Method::GET,
        "Reports.S3.Wharf.Test",
        "/2026/q3.csv",
        "",
    );
    assert_eq!(got.text().expect("body"), "a,b\n");
    let by_path = send(
        reqwest::Method::GET,
        "s3.wharf.test",
        "/reports/2026/q3.csv",
        "",
    );
    assert_eq!(by_path.text().expect("body"), "a,b\n");
    let listed = send(
        reqwest::Method::GET,
        "reports.s3.wharf.test",
        "/?list-type=2",
        "",
    )
    .text()
    .expect("list");
    assert!(listed.contains("<Key>2026/q3.csv</Key>"), "{listed}");
    let missing = send(reqwest::Method::GET, "nothere.s3.wharf.test", "/x", "");
    assert_eq!(missing.status().as_u16(), 404);
    assert!(missing.text().expect("body").contains("NoSuchBucket"));
}

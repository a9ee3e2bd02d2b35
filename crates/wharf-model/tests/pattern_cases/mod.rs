//! Table cases for event patterns, shared by `tests/pattern_match.rs` and
//! `tests/pattern_errors.rs`. They are plain data behind a `check(pattern, event, expect)`
//! callback so that another matcher can be run against the same table.
//!
//! Unless noted, patterns and events are the examples of the Amazon EventBridge user guide
//! ("Event patterns", "Comparison operators", "Arrays", "Null values and empty strings")
//! and of the README of aws/event-ruler, the matching engine behind EventBridge.

#![allow(dead_code)]

pub mod invalid;
mod operators;

pub use crate::pattern_cases::operators::{
    anything_but, numeric, other_operators, string_operators, wildcards,
};

pub type Check<'a> = &'a mut dyn FnMut(&str, &str, bool);

/// The EC2 event of the "Event patterns" page.
pub const EC2_EVENT: &str = r#"{
  "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
  "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
  "account": "111122223333", "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
  "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
  "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"}
}"#;

/// The event of the event-ruler README, used by its content-filtering examples.
pub const RULER_EVENT: &str = r#"{
  "version": "0", "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
  "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
  "account": "012345679012", "time": "2017-10-02T16:24:49Z", "region": "us-east-1",
  "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
  "detail": {"c-count": 5, "d-count": 3, "x-limit": 301.8, "source-ip": "10.0.0.33",
             "instance-id": "i-000000aaaaaa00000", "state": "running"}
}"#;

/// The Auto Scaling event of the "Null values and empty strings" page.
pub const AUTOSCALING_EVENT: &str = r#"{
  "version": "0", "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
  "detail-type": "EC2 Instance Launch Successful", "source": "aws.autoscaling",
  "account": "123456789012", "time": "2015-11-11T21:31:47Z", "region": "us-east-1",
  "resources": [], "detail": {"eventVersion": "", "responseElements": null}
}"#;

/// The Object Created event Wharf emits for `PUT s3://input/data/x.rds`.
pub const WHARF_OBJECT_CREATED: &str = r#"{"version":"0","id":"01J...","detail-type":"Object Created","source":"wharf.s3","account":"wharf","time":"2026-11-23T10:00:00Z","region":"wharf","resources":["arn:aws:s3:::input"],"detail":{"version":"0","bucket":{"name":"input"},"object":{"key":"data/x.rds","size":1234,"etag":"\"9b2cf535f27731c974343645a3985328\"","sequencer":"00000000000000000001"},"request-id":"...","requester":"alice","reason":"PutObject"}}"#;

/// `WHARF_OBJECT_CREATED` with another bucket and key.
pub fn wharf_event(bucket: &str, key: &str) -> String {
    let mut event: serde_json::Value = serde_json::from_str(WHARF_OBJECT_CREATED).unwrap();
    event["detail"]["bucket"]["name"] = serde_json::Value::from(bucket);
    event["detail"]["object"]["key"] = serde_json::Value::from(key);
    event.to_string()
}

/// `{"detail": {field: value}}` as an event.
pub fn detail(field: &str, value: &str) -> String {
    format!(r#"{{"source": "aws.ec2", "detail": {{"{field}": {value}}}}}"#)
}

/// Matching on values, nesting, null, empty strings and arrays.
pub fn values(check: Check<'_>) {
    let terminated = r#"{"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"], "detail": {"state": ["terminated"]}}"#;
    check(terminated, EC2_EVENT, true);
    check(
        terminated,
        &EC2_EVENT.replace("\"terminated\"", "\"running\""),
        false,
    );
    check(
        terminated,
        &EC2_EVENT.replace("\"aws.ec2\"", "\"aws.ec3\""),
        false,
    );
    // Fields the pattern does not name are ignored; fields it names must be there.
    check(r#"{"region": ["us-west-1"]}"#, EC2_EVENT, true);
    check(r#"{"detail": {"missing": ["x"]}}"#, EC2_EVENT, false);
    check(
        r#"{"detail": {"state": {"name": ["terminated"]}}}"#,
        EC2_EVENT,
        false,
    );
    // Matching on several values: "source" is "aws.ec2" or "aws.fargate".
    let ec2_or_fargate = r#"{"source": ["aws.ec2", "aws.fargate"]}"#;
    check(ec2_or_fargate, EC2_EVENT, true);
    check(ec2_or_fargate, r#"{"source": "aws.fargate"}"#, true);
    check(ec2_or_fargate, r#"{"source": "aws.s3"}"#, false);
    // Strings are matched exactly, without case folding.
    check(r#"{"source": ["AWS.EC2"]}"#, EC2_EVENT, false);
    check(r#"{"source": ["aws.ec2 "]}"#, EC2_EVENT, false);
    // And: Location is "New York" and Day is "Monday".
    let and = r#"{"Location": ["New York"], "Day": ["Monday"]}"#;
    check(and, r#"{"Location": "New York", "Day": "Monday"}"#, true);
    check(and, r#"{"Location": "New York", "Day": "Tuesday"}"#, false);
    check(and, r#"{"Location": "New York"}"#, false);
    // Or: PaymentType is "Credit" or "Debit".
    let or = r#"{"PaymentType": ["Credit", "Debit"]}"#;
    check(or, r#"{"PaymentType": "Debit"}"#, true);
    check(or, r#"{"PaymentType": "Cash"}"#, false);
    // Null and empty strings, which are not interchangeable.
    let scaling = r#"{"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance Launch Successful"], "detail": {"responseElements": [null]}}"#;
    check(scaling, AUTOSCALING_EVENT, true);
    check(
        r#"{"detail": {"eventVersion": [""]}}"#,
        AUTOSCALING_EVENT,
        true,
    );
    check(
        r#"{"detail": {"responseElements": [null]}}"#,
        AUTOSCALING_EVENT,
        true,
    );
    check(
        r#"{"detail": {"eventVersion": [null]}}"#,
        AUTOSCALING_EVENT,
        false,
    );
    check(
        r#"{"detail": {"responseElements": [""]}}"#,
        AUTOSCALING_EVENT,
        false,
    );
    check(r#"{"UserID": [null]}"#, r#"{"UserID": null}"#, true);
    check(r#"{"UserID": [null]}"#, r#"{"UserID": "null"}"#, false);
    check(r#"{"UserID": [null]}"#, r#"{}"#, false);
    check(r#"{"LastName": [""]}"#, r#"{"LastName": ""}"#, true);
    check(r#"{"LastName": [""]}"#, r#"{"LastName": " "}"#, false);
    // Value matching on the Macie example: numbers, and nested objects.
    let macie = r#"{"source": ["aws.macie"], "detail-type": ["Macie Alert"], "detail": {"risk-score": [80], "trigger": {"risk": [8]}}}"#;
    let macie_event = r#"{"version": "0", "detail-type": "Macie Alert", "source": "aws.macie", "detail": {"notification-type": "ALERT_CREATED", "tags": ["Custom_Alert", "Insider"], "risk-score": 80, "trigger": {"alert-type": "basic", "risk": 8}}}"#;
    check(macie, macie_event, true);
    check(
        macie,
        &macie_event.replace("\"risk\": 8", "\"risk\": 7"),
        false,
    );
    check(
        macie,
        &macie_event.replace("\"risk-score\": 80", "\"risk-score\": \"80\""),
        false,
    );
    check(r#"{"detail": {"tags": ["Insider"]}}"#, macie_event, true);
    // Booleans and numbers are typed: true is not "true", 5 is not "5".
    check(r#"{"enabled": [true]}"#, r#"{"enabled": true}"#, true);
    check(r#"{"enabled": [true]}"#, r#"{"enabled": "true"}"#, false);
    check(r#"{"enabled": [false]}"#, r#"{"enabled": true}"#, false);
    check(r#"{"count": [5]}"#, r#"{"count": "5"}"#, false);
    check(r#"{"count": ["5"]}"#, r#"{"count": 5}"#, false);
    // Numbers match by value (event-ruler adds a numeric-equals matcher for them).
    check(r#"{"Price": [300]}"#, r#"{"Price": 300.0}"#, true);
    check(r#"{"Price": [300]}"#, r#"{"Price": 3.0e2}"#, true);
    check(r#"{"Price": [300]}"#, r#"{"Price": 301}"#, false);
    check(
        r#"{"account": [123456789012]}"#,
        r#"{"account": 123456789012}"#,
        true,
    );
    // When a key is given twice, the last one counts.
    let twice = r#"{"detail": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}"#;
    check(twice, &detail("location", "\"eu-west\""), true);
    check(twice, &detail("location", "\"us-east\""), false);
}

/// Arrays in events: a field matches when any element does.
pub fn arrays(check: Check<'_>) {
    let resources = r#"{"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f", "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f", "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"]}"#;
    let event = r#"{"resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate", "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]}"#;
    check(resources, event, true);
    check(resources, r#"{"resources": ["arn:other"]}"#, false);
    check(resources, r#"{"resources": []}"#, false);
    // Arrays of objects are crushed, but the fields of one pattern object must match
    // within the same element.
    let employees = r#"{"employees": [{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}, {"firstName": "Peter", "lastName": "Jones"}]}"#;
    check(r#"{"employees": {"firstName": ["Anna"]}}"#, employees, true);
    check(
        r#"{"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}"#,
        employees,
        true,
    );
    check(
        r#"{"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}"#,
        employees,
        false,
    );
    let nested = r#"{"employees": [[{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}], [{"firstName": "Peter", "lastName": "Jones"}]]}"#;
    check(r#"{"employees": {"firstName": ["Anna"]}}"#, nested, true);
    check(
        r#"{"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}"#,
        nested,
        false,
    );
    check(r#"{"tags": ["b"]}"#, r#"{"tags": [["a"], [["b"]]]}"#, true);
    check(
        r#"{"tags": [{"prefix": "x"}]}"#,
        r#"{"tags": ["a", "xb"]}"#,
        true,
    );
    check(
        r#"{"tags": [{"prefix": "x"}]}"#,
        r#"{"tags": ["a", "b"]}"#,
        false,
    );
}

/// `$or`, from the EventBridge guide and the event-ruler README.
pub fn or(check: Check<'_>) {
    let counts = r#"{"detail": {"$or": [{"c-count": [{"numeric": [">", 0, "<=", 5]}]}, {"d-count": [{"numeric": ["<", 10]}]}, {"x-limit": [{"numeric": ["=", 3.018e2]}]}]}}"#;
    check(counts, RULER_EVENT, true);
    check(
        counts,
        r#"{"detail": {"c-count": 99, "d-count": 99, "x-limit": 301.8}}"#,
        true,
    );
    check(
        counts,
        r#"{"detail": {"c-count": 99, "d-count": 99, "x-limit": 1}}"#,
        false,
    );
    let normal = r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}]}"#;
    check(
        normal,
        r#"{"source": "aws.cloudwatch", "metricName": "ReadLatency"}"#,
        true,
    );
    check(
        normal,
        r#"{"source": "aws.cloudwatch", "namespace": "AWS/ES"}"#,
        true,
    );
    check(
        normal,
        r#"{"source": "aws.cloudwatch", "namespace": "AWS/S3"}"#,
        false,
    );
    check(
        normal,
        r#"{"source": "aws.ec2", "metricName": "ReadLatency"}"#,
        false,
    );
    let parallel = r#"{"$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}], "detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]}}"#;
    check(
        parallel,
        r#"{"namespace": "AWS/EC2", "detail": {"detail-type": "CloudWatch Alarm State Change"}}"#,
        true,
    );
    check(
        parallel,
        r#"{"namespace": "AWS/EC2", "detail": {"detail-type": "Other"}}"#,
        false,
    );
    check(
        parallel,
        r#"{"namespace": "AWS/S3", "detail": {"source": "aws.cloudwatch"}}"#,
        false,
    );
    let and_inside = r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"metricType": ["MetricType"], "namespace": ["AWS/EC2", "AWS/ES"]}, {"scope": ["Service"]}]}"#;
    check(
        and_inside,
        r#"{"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2"}"#,
        true,
    );
    check(
        and_inside,
        r#"{"source": "aws.cloudwatch", "metricType": "MetricType"}"#,
        false,
    );
    check(
        and_inside,
        r#"{"source": "aws.cloudwatch", "scope": "Service"}"#,
        true,
    );
    let nested = r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"metricType": ["MetricType"], "namespace": ["AWS/EC2", "AWS/ES"], "$or": [{"metricId": [1234]}, {"spaceId": [1000]}]}, {"scope": ["Service"]}]}"#;
    check(
        nested,
        r#"{"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/ES", "spaceId": 1000}"#,
        true,
    );
    check(
        nested,
        r#"{"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/ES", "spaceId": 1001}"#,
        false,
    );
    check(
        nested,
        r#"{"source": "aws.cloudwatch", "metricName": "CPUUtilization"}"#,
        true,
    );
    // Alternatives reach into nested objects, and within arrays stay in one element.
    let items = r#"{"items": {"$or": [{"a": ["1"]}, {"b": ["2"]}], "c": ["3"]}}"#;
    check(
        items,
        r#"{"items": [{"a": "1", "c": "0"}, {"b": "2", "c": "3"}]}"#,
        true,
    );
    check(
        items,
        r#"{"items": [{"a": "1", "c": "0"}, {"b": "0", "c": "3"}]}"#,
        false,
    );
}

/// Wharf's own Object Created events against `object_created`-style patterns.
pub fn wharf_object_created(check: Check<'_>) {
    let bucket = r#"{"source": ["wharf.s3"], "detail-type": ["Object Created"], "detail": {"bucket": {"name": ["input"]}}}"#;
    check(bucket, WHARF_OBJECT_CREATED, true);
    check(bucket, &wharf_event("output", "data/x.rds"), false);
    let rds = r#"{"source": ["wharf.s3"], "detail": {"bucket": {"name": ["input"]}, "object": {"key": [{"suffix": ".rds"}]}}}"#;
    check(rds, WHARF_OBJECT_CREATED, true);
    check(rds, &wharf_event("input", "data/x.csv"), false);
    let both = r#"{"detail": {"object": {"key": [{"wildcard": "data/*.rds"}]}}}"#;
    check(both, WHARF_OBJECT_CREATED, true);
    check(both, &wharf_event("input", "other/x.rds"), false);
    check(both, &wharf_event("input", "data/x.csv"), false);
    let large = r#"{"detail": {"object": {"size": [{"numeric": [">=", 1024]}]}, "requester": [{"anything-but": "robot"}]}}"#;
    check(large, WHARF_OBJECT_CREATED, true);
    check(
        large,
        &WHARF_OBJECT_CREATED.replace("\"size\":1234", "\"size\":12"),
        false,
    );
    let etag = r#"{"detail": {"object": {"etag": ["\"9b2cf535f27731c974343645a3985328\""]}, "reason": ["PutObject", "CopyObject"]}}"#;
    check(etag, WHARF_OBJECT_CREATED, true);
    check(
        r#"{"resources": ["arn:aws:s3:::input"]}"#,
        WHARF_OBJECT_CREATED,
        true,
    );
}

/// Every case group, for a matcher to run them all.
pub fn all(check: Check<'_>) {
    values(check);
    arrays(check);
    string_operators(check);
    wildcards(check);
    anything_but(check);
    numeric(check);
    other_operators(check);
    or(check);
    wharf_object_created(check);
}

//! Real S3 clients against the real `wharf` binary's S3 listener: boto3
//! (tests/clients/boto3_suite.py), aws-cli and rclone, each with its default settings.
//! A missing client fails its tests with what to install (CI installs them all).

mod common;

#[path = "s3_clients/awscli.rs"]
mod awscli;
#[path = "s3_clients/awscli_bulk.rs"]
mod awscli_bulk;
#[path = "s3_clients/boto3.rs"]
mod boto3;
#[path = "s3_clients/rclone.rs"]
mod rclone;
#[path = "s3_clients/support.rs"]
mod support;

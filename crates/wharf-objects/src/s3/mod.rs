//! The S3 protocol front end: [`WharfS3`] implements s3s's `S3` trait over [`Objects`].
//! Object operations are here, multipart ones in `multipart.rs`, authentication and
//! authorization in `access.rs`, the listener in `serve.rs`.

pub mod access;
mod checksum;
mod convert;
mod multipart;
pub mod serve;

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use crate::list::ListRequest;
use crate::s3::access::Identity;
use crate::s3::checksum::ChecksumCheck;
use crate::s3::convert::{
    check_conditions, etag, map_error, metadata_from, metadata_to, timestamp, to_blob_stream,
};
use crate::service::{metadata_map, Objects, PutOptions};

/// The S3 service over Wharf's buckets.
#[derive(Clone)]
pub struct WharfS3 {
    pub(crate) objects: Objects,
}

impl WharfS3 {
    pub fn new(objects: Objects) -> WharfS3 {
        WharfS3 { objects }
    }
}

pub(crate) fn identity<T>(request: &S3Request<T>) -> Identity {
    request
        .extensions
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity {
            name: "anonymous".into(),
            buckets: Some(Vec::new()),
            manages_buckets: false,
        })
}

/// S3 answers `KeyTooLongError` for keys over 1024 bytes (the object layer's own check
/// says `InvalidArgument`, which clients do not recognise).
pub(crate) fn check_key_length(key: &str) -> S3Result<()> {
    if key.len() > crate::service::MAX_KEY_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is {} bytes; an object key may be at most {} bytes of UTF-8",
            key.len(),
            crate::service::MAX_KEY_BYTES
        ));
    }
    Ok(())
}

fn owner() -> Owner {
    Owner {
        display_name: Some("wharf".into()),
        id: Some("wharf".into()),
    }
}

#[async_trait::async_trait]
impl S3 for WharfS3 {
    async fn list_buckets(
        &self,
        request: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let caller = identity(&request);
        let buckets = self.objects.list_buckets().await.map_err(map_error)?;
        let buckets = buckets
            .into_iter()
            .filter(|bucket| caller.allows_bucket(&bucket.name))
            .map(|bucket| Bucket {
                name: Some(bucket.name),
                creation_date: Some(timestamp(bucket.created_at)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        request: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let caller = identity(&request);
        let name = request.input.bucket;
        self.objects
            .create_bucket(&name, &caller.name)
            .await
            .map_err(map_error)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    async fn delete_bucket(
        &self,
        request: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.objects
            .delete_bucket(&request.input.bucket)
            .await
            .map_err(map_error)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        request: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.objects
            .bucket(&request.input.bucket)
            .await
            .map_err(map_error)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        request: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.objects
            .bucket(&request.input.bucket)
            .await
            .map_err(map_error)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(
        &self,
        request: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let caller = identity(&request);
        let input = request.input;
        check_key_length(&input.key)?;
        let limit = self.objects.config().max_object_size;
        if input
            .content_length
            .is_some_and(|length| length as u64 > limit)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size ({limit} bytes)"
            ));
        }
        if let Some(condition) = &input.if_none_match {
            if matches!(condition, ETagCondition::Any)
                && self
                    .objects
                    .store()
                    .find_object(&input.bucket, &input.key)
                    .await
                    .map_err(|error| map_error(error.into()))?
                    .is_some()
            {
                return Err(s3_error!(PreconditionFailed, "the object already exists"));
            }
        }
        let checksums = ChecksumCheck::new(&request.headers, request.trailing_headers.clone());
        let body = checksums.wrap(to_blob_stream(input.body, limit));
        let options = PutOptions {
            content_type: input.content_type,
            metadata: metadata_from(input.metadata),
            content_md5: input.content_md5,
            requester: caller.name,
        };
        let row = self
            .objects
            .put_object(&input.bucket, &input.key, body, options)
            .await
            .map_err(|error| checksums.bad_digest().unwrap_or_else(|| map_error(error)))?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&row.etag)),
            size: Some(row.size),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        request: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = request.input;
        let row = self
            .objects
            .head_object(&input.bucket, &input.key)
            .await
            .map_err(map_error)?;
        check_conditions(
            &row,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let size = row.size.max(0) as u64;
        let (range, content_range) = match &input.range {
            None => (0..size, None),
            Some(range) => {
                let checked = range.check(size).map_err(|_| {
                    s3_error!(
                        InvalidRange,
                        "The requested range is not satisfiable (object size {size})"
                    )
                })?;
                let header = format!(
                    "bytes {}-{}/{size}",
                    checked.start,
                    checked.end.saturating_sub(1)
                );
                (checked, Some(header))
            }
        };
        let stream = self
            .objects
            .read_object(&row, range.start, range.end - range.start)
            .await
            .map_err(map_error)?;
        let body = StreamingBlob::wrap(stream);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: input
                .response_content_type
                .or_else(|| row.content_type.clone()),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(timestamp(row.last_modified)),
            metadata: metadata_to(&metadata_map(&row.metadata)),
            parts_count: row.parts_count.map(|count| count as i32),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        request: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = request.input;
        let row = self
            .objects
            .head_object(&input.bucket, &input.key)
            .await
            .map_err(map_error)?;
        check_conditions(
            &row,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(row.size),
            accept_ranges: Some("bytes".into()),
            content_type: row.content_type.clone(),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(timestamp(row.last_modified)),
            metadata: metadata_to(&metadata_map(&row.metadata)),
            parts_count: row.parts_count.map(|count| count as i32),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        request: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let caller = identity(&request);
        let input = request.input;
        self.objects
            .delete_object(&input.bucket, &input.key, &caller.name)
            .await
            .map_err(map_error)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        request: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let caller = identity(&request);
        let input = request.input;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "DeleteObjects accepts at most 1000 keys per request"
            ));
        }
        self.objects
            .bucket(&input.bucket)
            .await
            .map_err(map_error)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            match self
                .objects
                .delete_object(&input.bucket, &object.key, &caller.name)
                .await
            {
                Ok(_) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            ..Default::default()
                        });
                    }
                }
                Err(error) => {
                    let error = map_error(error);
                    errors.push(Error {
                        code: Some(error.code().as_str().to_owned()),
                        key: Some(object.key),
                        message: error.message().map(str::to_owned),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        request: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let caller = identity(&request);
        let input = request.input;
        check_key_length(&input.key)?;
        let CopySource::Bucket {
            bucket: source_bucket,
            key: source_key,
            ..
        } = &input.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "copying from an access point is not supported; name the source as bucket/key"
            ));
        };
        if !caller.allows_bucket(source_bucket) {
            return Err(s3_error!(
                AccessDenied,
                "This key may not read the copy source's bucket"
            ));
        }
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|directive| directive.as_str() == MetadataDirective::REPLACE);
        if !replace && **source_bucket == *input.bucket && **source_key == *input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata"
            ));
        }
        let options = replace.then(|| PutOptions {
            content_type: input.content_type.clone(),
            metadata: metadata_from(input.metadata.clone()),
            content_md5: None,
            requester: caller.name.clone(),
        });
        let row = self
            .objects
            .copy_object(
                source_bucket,
                source_key,
                &input.bucket,
                &input.key,
                options,
                &caller.name,
            )
            .await
            .map_err(map_error)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&row.etag)),
                last_modified: Some(timestamp(row.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        request: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = request.input;
        let max_keys = input.max_keys.unwrap_or(1000);
        if max_keys < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
        }
        let list = ListRequest {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            start_after: input.start_after.clone(),
            continuation_token: input.continuation_token.clone(),
            max_keys: max_keys as usize,
        };
        let page = self
            .objects
            .list_objects(&input.bucket, &list)
            .await
            .map_err(map_error)?;
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let url = convert::url_encoding(input.encoding_type.as_ref());
        let encode = |text: Option<String>| text.map(|text| convert::encode_if(url, text));
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: encode(input.prefix),
            delimiter: encode(input.delimiter),
            max_keys: Some(max_keys.min(1000)),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: encode(input.start_after),
            is_truncated: Some(page.truncated),
            next_continuation_token: page.next_token,
            encoding_type: input.encoding_type,
            contents: Some(convert::object_entries(&page.objects, url)),
            common_prefixes: Some(convert::common_prefixes(page.common_prefixes, url)),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        request: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = request.input;
        let max_keys = input.max_keys.unwrap_or(1000).max(0);
        let list = ListRequest {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            start_after: input.marker.clone(),
            continuation_token: None,
            max_keys: max_keys as usize,
        };
        let page = self
            .objects
            .list_objects(&input.bucket, &list)
            .await
            .map_err(map_error)?;
        let last = page
            .objects
            .last()
            .map(|row| row.key.clone())
            .into_iter()
            .chain(page.common_prefixes.last().cloned())
            .max();
        let url = convert::url_encoding(input.encoding_type.as_ref());
        let encode = |text: Option<String>| text.map(|text| convert::encode_if(url, text));
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: encode(input.prefix),
            delimiter: encode(input.delimiter.clone()),
            marker: encode(input.marker),
            max_keys: Some(max_keys.min(1000)),
            is_truncated: Some(page.truncated),
            next_marker: if page.truncated && input.delimiter.is_some() {
                encode(last)
            } else {
                None
            },
            encoding_type: input.encoding_type,
            contents: Some(convert::object_entries(&page.objects, url)),
            common_prefixes: Some(convert::common_prefixes(page.common_prefixes, url)),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        request: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, request).await
    }

    async fn upload_part(
        &self,
        request: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, request).await
    }

    async fn complete_multipart_upload(
        &self,
        request: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, request).await
    }

    async fn abort_multipart_upload(
        &self,
        request: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, request).await
    }

    async fn list_parts(
        &self,
        request: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, request).await
    }

    async fn list_multipart_uploads(
        &self,
        request: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, request).await
    }
}

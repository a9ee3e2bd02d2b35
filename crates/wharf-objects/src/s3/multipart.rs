//! Multipart operations of the S3 front end.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::s3::checksum::ChecksumCheck;
use crate::s3::convert::{etag, map_error, metadata_from, timestamp, to_blob_stream};
use crate::s3::{identity, WharfS3};
use crate::service::PutOptions;

pub async fn create(
    s3: &WharfS3,
    request: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let caller = identity(&request);
    let input = request.input;
    crate::s3::check_key_length(&input.key)?;
    let options = PutOptions {
        content_type: input.content_type,
        metadata: metadata_from(input.metadata),
        content_md5: None,
        requester: caller.name,
    };
    let upload = s3
        .objects
        .create_multipart_upload(&input.bucket, &input.key, options)
        .await
        .map_err(map_error)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.id),
        ..Default::default()
    }))
}

pub async fn upload_part(
    s3: &WharfS3,
    request: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let checksums = ChecksumCheck::new(&request.headers, request.trailing_headers.clone());
    let input = request.input;
    let limit = s3.objects.config().max_object_size;
    if input
        .content_length
        .is_some_and(|length| length as u64 > limit)
    {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed part size ({limit} bytes)"
        ));
    }
    let part = s3
        .objects
        .upload_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            i64::from(input.part_number),
            checksums.wrap(to_blob_stream(input.body, limit)),
            input.content_md5.as_deref(),
        )
        .await
        .map_err(|error| checksums.bad_digest().unwrap_or_else(|| map_error(error)))?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(etag(&part.etag)),
        ..Default::default()
    }))
}

pub async fn complete(
    s3: &WharfS3,
    request: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let caller = identity(&request);
    let input = request.input;
    let parts = input
        .multipart_upload
        .and_then(|upload| upload.parts)
        .unwrap_or_default();
    let mut requested = Vec::with_capacity(parts.len());
    for part in parts {
        let (Some(number), Some(tag)) = (part.part_number, part.e_tag) else {
            return Err(s3_error!(
                MalformedXML,
                "every Part needs a PartNumber and an ETag"
            ));
        };
        requested.push((i64::from(number), tag.value().to_owned()));
    }
    let row = s3
        .objects
        .complete_multipart_upload(
            &input.bucket,
            &input.key,
            &input.upload_id,
            &requested,
            &caller.name,
        )
        .await
        .map_err(map_error)?;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(etag(&row.etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        ..Default::default()
    }))
}

pub async fn abort(
    s3: &WharfS3,
    request: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = request.input;
    s3.objects
        .abort_multipart_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(map_error)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(
    s3: &WharfS3,
    request: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = request.input;
    s3.objects
        .multipart_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(map_error)?;
    let max_parts = input.max_parts.unwrap_or(1000).clamp(0, 1000);
    let marker = i64::from(input.part_number_marker.unwrap_or(0).max(0));
    let mut parts = s3
        .objects
        .store()
        .list_parts(&input.upload_id, marker, i64::from(max_parts) + 1)
        .await
        .map_err(|error| map_error(error.into()))?;
    let truncated = parts.len() > max_parts as usize;
    parts.truncate(max_parts as usize);
    let next = parts.last().map(|part| part.part_number as i32);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max_parts),
        is_truncated: Some(truncated),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: if truncated { next } else { None },
        parts: Some(
            parts
                .into_iter()
                .map(|part| Part {
                    part_number: Some(part.part_number as i32),
                    e_tag: Some(etag(&part.etag)),
                    size: Some(part.size),
                    last_modified: Some(timestamp(part.created_at)),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    s3: &WharfS3,
    request: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = request.input;
    s3.objects.bucket(&input.bucket).await.map_err(map_error)?;
    let max_uploads = input.max_uploads.unwrap_or(1000).clamp(0, 1000);
    let prefix = input.prefix.clone().unwrap_or_default();
    let mut uploads = s3
        .objects
        .store()
        .list_multipart_uploads(
            &input.bucket,
            &prefix,
            input.key_marker.as_deref().unwrap_or(""),
            input.upload_id_marker.as_deref().unwrap_or(""),
            i64::from(max_uploads) + 1,
        )
        .await
        .map_err(|error| map_error(error.into()))?;
    let truncated = uploads.len() > max_uploads as usize;
    uploads.truncate(max_uploads as usize);
    let last = uploads
        .last()
        .map(|upload| (upload.key.clone(), upload.id.clone()));
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max_uploads),
        is_truncated: Some(truncated),
        next_key_marker: last.as_ref().filter(|_| truncated).map(|l| l.0.clone()),
        next_upload_id_marker: last.filter(|_| truncated).map(|l| l.1),
        uploads: Some(
            uploads
                .into_iter()
                .map(|upload| MultipartUpload {
                    key: Some(upload.key),
                    upload_id: Some(upload.id),
                    initiated: Some(timestamp(upload.created_at)),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

//! Multipart uploads: parts are blobs of their own; completing an upload makes an object
//! that refers to its parts in order (no bytes are copied), with S3's multipart ETag.

use std::collections::BTreeMap;

use wharf_store::{MultipartUploadRow, ObjectRow, PartRow};

use crate::blob::ByteStream;
use crate::error::{ObjectError, ObjectResult};
use crate::events::{self, Reason};
use crate::service::{etag_hex, metadata_json, multipart_etag, validate_key, Objects, PutOptions};

pub const MAX_PART_NUMBER: i64 = 10_000;
/// Every part but the last must be at least this big (S3's `EntityTooSmall` rule).
pub const MIN_PART_SIZE: i64 = 5 * 1024 * 1024;

impl Objects {
    pub async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
    ) -> ObjectResult<MultipartUploadRow> {
        validate_key(key)?;
        self.bucket(bucket).await?;
        let row = MultipartUploadRow {
            id: ulid::Ulid::new().to_string().to_lowercase(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            content_type: options.content_type,
            metadata: metadata_json(&options.metadata),
            initiator: options.requester,
            created_at: wharf_store::now_millis(),
        };
        self.store().create_multipart_upload(&row).await?;
        Ok(row)
    }

    /// The upload, checked to belong to `bucket`/`key`.
    pub async fn multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> ObjectResult<MultipartUploadRow> {
        match self.store().find_multipart_upload(upload_id).await? {
            Some(row) if row.bucket == bucket && row.key == key => Ok(row),
            _ => {
                self.bucket(bucket).await?;
                Err(ObjectError::NoSuchUpload(upload_id.to_owned()))
            }
        }
    }

    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i64,
        body: ByteStream,
        content_md5: Option<&str>,
    ) -> ObjectResult<PartRow> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(ObjectError::InvalidArgument(format!(
                "part number {part_number} is out of range; use 1 to {MAX_PART_NUMBER}"
            )));
        }
        self.multipart_upload(bucket, key, upload_id).await?;
        let written = self
            .blobs()
            .write(body, self.config().max_object_size)
            .await?;
        if let Some(expected) = content_md5 {
            let matches = crate::service::base64_decode(expected.trim())
                .is_some_and(|decoded| decoded == written.md5);
            if !matches {
                let _ = self.blobs().delete(&written.id).await;
                return Err(ObjectError::BadDigest);
            }
        }
        let part = PartRow {
            upload_id: upload_id.to_owned(),
            part_number,
            blob_id: written.id,
            size: written.size as i64,
            etag: etag_hex(&written.md5),
            created_at: wharf_store::now_millis(),
        };
        if !self.store().put_part(&part).await? {
            self.garbage_changed();
            return Err(ObjectError::NoSuchUpload(upload_id.to_owned()));
        }
        self.garbage_changed();
        Ok(part)
    }

    /// Completes an upload from the client's list of (part number, ETag), which must be
    /// in ascending order and name uploaded parts.
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        requested: &[(i64, String)],
        requester: &str,
    ) -> ObjectResult<ObjectRow> {
        let upload = self.multipart_upload(bucket, key, upload_id).await?;
        if requested.is_empty() {
            return Err(ObjectError::InvalidArgument(
                "CompleteMultipartUpload needs at least one part".into(),
            ));
        }
        let stored: BTreeMap<i64, PartRow> = self
            .store()
            .list_parts(upload_id, 0, MAX_PART_NUMBER + 1)
            .await?
            .into_iter()
            .map(|part| (part.part_number, part))
            .collect();
        // The whole list's order first: S3 answers InvalidPartOrder for a list out of
        // order even when one of its parts is also too small.
        if requested.windows(2).any(|pair| pair[1].0 <= pair[0].0) {
            return Err(ObjectError::InvalidPart(
                "the list of parts is not in ascending order (InvalidPartOrder)".into(),
            ));
        }
        let mut chosen = Vec::with_capacity(requested.len());
        for (index, (number, etag)) in requested.iter().enumerate() {
            let part = stored.get(number).ok_or_else(|| {
                ObjectError::InvalidPart(format!("part {number} was not uploaded"))
            })?;
            let wanted = etag.trim_matches('"');
            if wanted != part.etag {
                return Err(ObjectError::InvalidPart(format!(
                    "part {number} has ETag \"{}\", not \"{wanted}\"",
                    part.etag
                )));
            }
            if index + 1 < requested.len() && part.size < MIN_PART_SIZE {
                return Err(ObjectError::InvalidPart(format!(
                    "part {number} is {} bytes; every part but the last must be at least 5 MiB (EntityTooSmall)",
                    part.size
                )));
            }
            chosen.push(part);
        }
        let etags: Vec<String> = chosen.iter().map(|part| part.etag.clone()).collect();
        let blob_list: Vec<(String, i64)> = chosen
            .iter()
            .map(|part| (part.blob_id.clone(), part.size))
            .collect();
        let now = wharf_store::now_millis();
        let row = ObjectRow {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            blob_id: serde_json::to_string(&blob_list)
                .map_err(|error| ObjectError::Internal(error.to_string()))?,
            size: chosen.iter().map(|part| part.size).sum(),
            etag: multipart_etag(&etags)?,
            content_type: upload.content_type,
            metadata: upload.metadata,
            parts_count: Some(chosen.len() as i64),
            last_modified: now,
        };
        let event = events::object_created(
            bucket,
            key,
            row.size,
            &row.etag,
            Reason::CompleteMultipartUpload,
            requester,
            now,
        );
        if !self
            .store()
            .complete_multipart_upload(upload_id, &row, &event)
            .await?
        {
            return Err(ObjectError::NoSuchUpload(upload_id.to_owned()));
        }
        self.events_changed();
        self.garbage_changed();
        Ok(row)
    }

    pub async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> ObjectResult<()> {
        self.multipart_upload(bucket, key, upload_id).await?;
        if !self.store().abort_multipart_upload(upload_id).await? {
            return Err(ObjectError::NoSuchUpload(upload_id.to_owned()));
        }
        self.garbage_changed();
        Ok(())
    }
}

//! Buckets: list, create, change public read access, delete (only when empty).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wharf_control::ControlError;

use crate::auth::Caller;
use crate::dto::{BucketCreateRequest, BucketInfo, BucketUpdateRequest, ErrorBody};
use crate::{rfc3339, ApiError, ApiResult, ApiState};

/// Resolves owner ids to user names, asking the store once per id.
#[derive(Default)]
struct OwnerNames {
    known: HashMap<String, String>,
}

impl OwnerNames {
    async fn name(&mut self, state: &ApiState, owner_id: &str) -> ApiResult<String> {
        if let Some(name) = self.known.get(owner_id) {
            return Ok(name.clone());
        }
        let name = match state.control.store().find_user_by_id(owner_id).await? {
            Some(user) => user.name,
            // A deleted user's bucket still lists, under its id.
            None => owner_id.to_owned(),
        };
        self.known.insert(owner_id.to_owned(), name.clone());
        Ok(name)
    }
}

async fn bucket_info(
    state: &ApiState,
    owners: &mut OwnerNames,
    bucket: &wharf_store::Bucket,
) -> ApiResult<BucketInfo> {
    Ok(BucketInfo {
        name: bucket.name.clone(),
        created_at: rfc3339(bucket.created_at),
        public_read: bucket.public_read,
        owner: owners.name(state, &bucket.owner_id).await?,
    })
}

/// Decodes a JSON body, saying what was wrong and what to send instead.
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Option<Json<serde_json::Value>>,
    example: &str,
) -> ApiResult<T> {
    let Some(Json(value)) = body else {
        return Err(ApiError::bad_request(format!(
            "the request needs a JSON body like {example}"
        )));
    };
    serde_json::from_value(value).map_err(|error| {
        ApiError::bad_request(format!(
            "the request body is not valid ({error}); send {example}"
        ))
    })
}

/// Every bucket, by name.
#[utoipa::path(get, path = "/api/v1/buckets", responses((status = 200, body = [BucketInfo])))]
pub async fn list_buckets(
    _caller: Caller,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<BucketInfo>>> {
    let buckets = state
        .control
        .objects()
        .list_buckets()
        .await
        .map_err(ControlError::from)?;
    let mut owners = OwnerNames::default();
    let mut infos = Vec::with_capacity(buckets.len());
    for bucket in &buckets {
        infos.push(bucket_info(&state, &mut owners, bucket).await?);
    }
    Ok(Json(infos))
}

/// Creates a bucket owned by the caller.
#[utoipa::path(post, path = "/api/v1/buckets", request_body = BucketCreateRequest,
    responses((status = 201, body = BucketInfo),
        (status = 400, body = ErrorBody, description = "the name breaks S3's bucket naming rules"),
        (status = 409, body = ErrorBody, description = "a bucket with that name exists")))]
pub async fn create_bucket(
    caller: Caller,
    State(state): State<ApiState>,
    body: Option<Json<serde_json::Value>>,
) -> ApiResult<(StatusCode, Json<BucketInfo>)> {
    let request: BucketCreateRequest = parse_body(
        body,
        "{\"name\": \"BUCKET\", \"public_read\": false} (public_read is optional)",
    )?;
    let owner = state
        .control
        .store()
        .find_user_by_name(&caller.user)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the calling user no longer exists"))?;
    let objects = state.control.objects();
    let mut bucket = objects
        .create_bucket(&request.name, &owner.id)
        .await
        .map_err(ControlError::from)?;
    if request.public_read {
        objects
            .set_public_read(&request.name, true)
            .await
            .map_err(ControlError::from)?;
        bucket.public_read = true;
    }
    let info = bucket_info(&state, &mut OwnerNames::default(), &bucket).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Turns anonymous read access of a bucket on or off.
#[utoipa::path(patch, path = "/api/v1/buckets/{name}", params(("name" = String, Path)),
    request_body = BucketUpdateRequest,
    responses((status = 200, body = BucketInfo), (status = 404, body = ErrorBody)))]
pub async fn update_bucket(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Option<Json<serde_json::Value>>,
) -> ApiResult<Json<BucketInfo>> {
    let request: BucketUpdateRequest = parse_body(body, "{\"public_read\": true}")?;
    let objects = state.control.objects();
    objects
        .set_public_read(&name, request.public_read)
        .await
        .map_err(ControlError::from)?;
    let bucket = objects.bucket(&name).await.map_err(ControlError::from)?;
    Ok(Json(
        bucket_info(&state, &mut OwnerNames::default(), &bucket).await?,
    ))
}

/// Deletes an empty bucket.
#[utoipa::path(delete, path = "/api/v1/buckets/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the bucket still has objects or multipart uploads")))]
pub async fn delete_bucket(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .control
        .objects()
        .delete_bucket(&name)
        .await
        .map_err(ControlError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

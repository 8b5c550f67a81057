//! What Supabase's replies mean: Storage's errors (every 4xx arrives as HTTP 400 with the real
//! status as a string in the body) and object info.

use crate::error::{ApiError, FieldError};
use serde::Deserialize;

/// A Storage error, with the real status recovered from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// The real status: `statusCode` of the body for a 400, else the HTTP status.
    pub status: u16,
    /// Storage's `code` (`NoSuchKey`, `NoSuchBucket`, `AccessDenied`, …) or `error`.
    pub code: String,
    pub message: String,
}

impl StorageError {
    /// Parses a non-2xx Storage reply. Non-JSON bodies (a gateway's HTML 413) keep the HTTP status.
    pub fn parse(http_status: u16, body: &[u8]) -> StorageError {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "statusCode")]
            status_code: Option<serde_json::Value>,
            error: Option<String>,
            message: Option<String>,
            code: Option<String>,
        }
        match serde_json::from_slice::<Raw>(body) {
            Ok(raw) => {
                let real = raw
                    .status_code
                    .and_then(|v| match v {
                        serde_json::Value::String(s) => s.parse().ok(),
                        serde_json::Value::Number(n) => {
                            n.as_u64().and_then(|n| u16::try_from(n).ok())
                        }
                        _ => None,
                    })
                    .filter(|s| (400..600).contains(s))
                    .unwrap_or(http_status);
                StorageError {
                    status: if http_status >= 500 {
                        http_status
                    } else {
                        real
                    },
                    code: raw.code.or(raw.error.clone()).unwrap_or_default(),
                    message: raw.message.or(raw.error).unwrap_or_default(),
                }
            }
            Err(_) => StorageError {
                status: http_status,
                code: String::new(),
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            },
        }
    }

    /// The object (or its bucket) does not exist, or is not visible to the caller.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
            || matches!(
                self.code.as_str(),
                "NoSuchKey" | "NoSuchBucket" | "not_found"
            )
    }

    /// Worth retrying: 5xx, 408, 429.
    pub fn is_transient(&self) -> bool {
        self.status >= 500 || self.status == 408 || self.status == 429
    }
}

/// `GET /storage/v1/object/info/{bucket}/{path}`: the fields the worker reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ObjectInfo {
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub content_type: Option<String>,
}

/// Input content types the providers accept (SPEC §4.1).
pub const INPUT_CONTENT_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/jpg", "image/webp"];

impl ObjectInfo {
    pub fn parse(body: &[u8]) -> Option<ObjectInfo> {
        serde_json::from_slice(body).ok()
    }

    /// Checks the object is an accepted image no larger than `max_bytes`; the reason otherwise.
    pub fn check_input(&self, max_bytes: u64) -> Result<(), String> {
        if let Some(size) = self.size {
            if size == 0 {
                return Err("the input object is empty".into());
            }
            if size > max_bytes {
                return Err(format!(
                    "the input object is {size} bytes; the limit is {max_bytes}"
                ));
            }
        }
        match self
            .content_type
            .as_deref()
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase())
        {
            Some(ct) if INPUT_CONTENT_TYPES.contains(&ct.as_str()) => Ok(()),
            Some(ct) => Err(format!("the input must be PNG, JPEG or WebP, not {ct}")),
            None => Ok(()),
        }
    }
}

/// What a submit-time proof read found (SPEC §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofOutcome {
    /// The caller may read the object; what Storage said about it.
    Readable(ObjectInfo),
    /// Missing, or not readable with the caller's rights: one answer for both, so the endpoint
    /// reveals nothing about other users' objects.
    Unreadable,
    /// Storage itself failed (5xx, 408, 429): no answer about the object; worth another try.
    Failed(StorageError),
}

/// Classifies a proof read's reply. Every refusal — `NoSuchKey`, `NoSuchBucket` (the public
/// route of a private bucket), a bad or foreign signed-URL token, an expired user token — is
/// [`ProofOutcome::Unreadable`]. A success is described by the info route's JSON or, for the
/// signed route's one-byte `Range` read and newer Storage versions whose info route answers
/// with headers only, by `Content-Range`/`Content-Length` and `Content-Type`.
pub fn proof_outcome(
    http_status: u16,
    body: &[u8],
    header: impl Fn(&str) -> Option<String>,
) -> ProofOutcome {
    if (200..300).contains(&http_status) {
        let json = ObjectInfo::parse(body).filter(|i| i.size.is_some());
        return ProofOutcome::Readable(json.unwrap_or_else(|| {
            ObjectInfo {
                size: header("content-range")
                    .and_then(|r| r.rsplit('/').next().and_then(|n| n.trim().parse().ok()))
                    .or_else(|| {
                        (http_status == 200)
                            .then(|| header("content-length"))
                            .flatten()
                            .and_then(|n| n.trim().parse().ok())
                    }),
                content_type: header("content-type"),
            }
        }));
    }
    let e = StorageError::parse(http_status, body);
    if e.is_transient() {
        ProofOutcome::Failed(e)
    } else {
        ProofOutcome::Unreadable
    }
}

/// The verdict on a submit's input proofs (SPEC §4.1), one `(field, outcome)` per input in the
/// request's order. A missing object and one the caller cannot read get the same 422
/// `input_asset_not_found`, and only a readable object is checked for type and size (422
/// `validation_error`), so nothing is learned about objects the caller cannot read. The refine's
/// model input is stored as a reference only: no image checks.
pub fn proofs_verdict(
    proofs: &[(String, ProofOutcome)],
    max_input_bytes: u64,
) -> Result<(), ApiError> {
    let mut invalid = Vec::new();
    let mut missing = Vec::new();
    for (field, outcome) in proofs {
        match outcome {
            ProofOutcome::Readable(info) => {
                if field != "input_model_asset_url" {
                    if let Err(msg) = info.check_input(max_input_bytes) {
                        invalid.push(FieldError::new(field.clone(), msg));
                    }
                }
            }
            ProofOutcome::Unreadable | ProofOutcome::Failed(_) => missing.push(FieldError::new(
                field.clone(),
                "no such object in Supabase Storage",
            )),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::InputAssetNotFound(missing));
    }
    if !invalid.is_empty() {
        return Err(ApiError::Validation(invalid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_hundreds_arrive_as_400_with_the_real_status_inside() {
        let e = StorageError::parse(
            400,
            br#"{"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"}"#,
        );
        assert_eq!(e.status, 404);
        assert_eq!(e.code, "NoSuchKey");
        assert!(e.is_not_found());
        assert!(!e.is_transient());
        let denied = StorageError::parse(
            400,
            br#"{"statusCode":"403","error":"Unauthorized","message":"signature verification failed","code":"AccessDenied"}"#,
        );
        assert_eq!(denied.status, 403);
        assert!(!denied.is_not_found());
    }

    #[test]
    fn five_hundreds_keep_their_status_and_html_is_tolerated() {
        let e = StorageError::parse(503, br#"{"statusCode":"503","message":"busy"}"#);
        assert_eq!(e.status, 503);
        assert!(e.is_transient());
        let html = StorageError::parse(413, b"<html>Request Entity Too Large</html>");
        assert_eq!(html.status, 413);
        assert!(html.message.contains("Too Large"));
    }

    #[test]
    fn input_checks_type_and_size() {
        let ok = ObjectInfo {
            size: Some(10),
            content_type: Some("image/png".into()),
        };
        assert!(ok.check_input(100).is_ok());
        let big = ObjectInfo {
            size: Some(101),
            content_type: Some("image/png".into()),
        };
        assert!(big.check_input(100).unwrap_err().contains("limit"));
        let pdf = ObjectInfo {
            size: Some(10),
            content_type: Some("application/pdf".into()),
        };
        assert!(pdf.check_input(100).unwrap_err().contains("PNG"));
        let parsed =
            ObjectInfo::parse(br#"{"id":"x","size":75,"content_type":"image/webp","etag":"e"}"#)
                .unwrap();
        assert_eq!(parsed.size, Some(75));
        assert!(parsed.check_input(100).is_ok());
    }

    fn no_headers(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn proof_refusals_all_read_as_unreadable() {
        for body in [
            &br#"{"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"}"#[..],
            br#"{"statusCode":"404","error":"Bucket not found","message":"Bucket not found","code":"NoSuchBucket"}"#,
            br#"{"statusCode":"400","error":"InvalidJWT","message":"invalid signature","code":"InvalidJWT"}"#,
            br#"{"statusCode":"400","error":"InvalidSignature","message":"The url do not match the signature","code":"InvalidSignature"}"#,
            br#"{"statusCode":"403","error":"Unauthorized","message":"\"exp\" claim timestamp check failed","code":"AccessDenied"}"#,
            b"",
        ] {
            assert_eq!(
                proof_outcome(400, body, no_headers),
                ProofOutcome::Unreadable,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn proof_failures_are_not_answers_about_the_object() {
        assert!(matches!(
            proof_outcome(503, b"busy", no_headers),
            ProofOutcome::Failed(e) if e.status == 503
        ));
        assert!(matches!(
            proof_outcome(400, br#"{"statusCode":"429","error":"slow down"}"#, no_headers),
            ProofOutcome::Failed(e) if e.status == 429
        ));
    }

    #[test]
    fn proof_success_reads_info_json_or_headers() {
        let info = proof_outcome(
            200,
            br#"{"id":"x","size":75,"content_type":"image/webp"}"#,
            no_headers,
        );
        assert_eq!(
            info,
            ProofOutcome::Readable(ObjectInfo {
                size: Some(75),
                content_type: Some("image/webp".into())
            })
        );
        let ranged = proof_outcome(206, b"\x89", |h| match h {
            "content-range" => Some("bytes 0-0/31337".into()),
            "content-length" => Some("1".into()),
            "content-type" => Some("image/png".into()),
            _ => None,
        });
        assert_eq!(
            ranged,
            ProofOutcome::Readable(ObjectInfo {
                size: Some(31337),
                content_type: Some("image/png".into())
            })
        );
        // A server that ignored the Range: the whole length is the size.
        let whole = proof_outcome(200, b"", |h| match h {
            "content-length" => Some("900".into()),
            _ => None,
        });
        assert_eq!(
            whole,
            ProofOutcome::Readable(ObjectInfo {
                size: Some(900),
                content_type: None
            })
        );
    }

    #[test]
    fn a_missing_input_hides_the_others_problems() {
        let png = |size| {
            ProofOutcome::Readable(ObjectInfo {
                size: Some(size),
                content_type: Some("image/png".into()),
            })
        };
        let ok = [("input_image_asset_url".to_owned(), png(10))];
        assert_eq!(proofs_verdict(&ok, 100), Ok(()));
        let big = [
            ("input_image_asset_urls[0]".to_owned(), png(1000)),
            ("input_model_asset_url".to_owned(), png(1000)),
        ];
        let e = proofs_verdict(&big, 100).unwrap_err();
        assert_eq!(e.code(), "validation_error");
        assert_eq!(e.details().len(), 1, "the model input is a reference only");
        let mixed = [
            ("input_image_asset_urls[0]".to_owned(), png(1000)),
            (
                "input_image_asset_urls[1]".to_owned(),
                ProofOutcome::Unreadable,
            ),
        ];
        let e = proofs_verdict(&mixed, 100).unwrap_err();
        assert_eq!(e.code(), "input_asset_not_found");
        assert_eq!(e.details()[0].field, "input_image_asset_urls[1]");
    }
}

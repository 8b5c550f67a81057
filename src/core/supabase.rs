//! What Supabase's replies mean: Storage's errors (every 4xx arrives as HTTP 400 with the real
//! status as a string in the body) and object info.

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
}

//! What a client's request becomes on its way to aws-sdk-s3: its key as the SDK can send
//! it ([`rewind_capture::upstream::sdk_key`]: a key of only whitespace travels as a
//! stand-in). The journal keeps the key as the client gave it, so this is the last step
//! before the request is handed over.

use rewind_capture::upstream::to_sdk_key;
use s3s::S3Request;
use s3s::dto;

/// A request about to be handed to aws-sdk-s3.
pub(crate) trait ForSdk {
    fn for_sdk(self) -> Self;
}

macro_rules! for_sdk {
    ($($input:ident),* $(,)?) => {$(
        impl ForSdk for S3Request<dto::$input> {
            fn for_sdk(mut self) -> Self {
                to_sdk_key(&mut self.input.key);
                self
            }
        }
    )*};
}

// Every input that names an object key: the captured mutations, and the reads and
// object settings forwarded as they are (`s3.rs`).
for_sdk!(
    PutObjectInput,
    UploadPartInput,
    CreateMultipartUploadInput,
    UploadPartCopyInput,
    CompleteMultipartUploadInput,
    AbortMultipartUploadInput,
    CopyObjectInput,
    DeleteObjectInput,
    PutObjectTaggingInput,
    DeleteObjectTaggingInput,
    GetObjectInput,
    GetObjectAclInput,
    GetObjectAttributesInput,
    GetObjectLegalHoldInput,
    GetObjectRetentionInput,
    GetObjectTaggingInput,
    GetObjectTorrentInput,
    HeadObjectInput,
    ListPartsInput,
    PutObjectAclInput,
    PutObjectLegalHoldInput,
    PutObjectRetentionInput,
    RestoreObjectInput,
    SelectObjectContentInput,
);

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

/// One `x-amz-object-attributes` header may list several attributes, comma-separated (what
/// boto3 sends); s3s keeps such a header as one value, which the SDK would then send
/// quoted, as one unknown attribute. Each attribute goes on its own.
impl ForSdk for S3Request<dto::GetObjectAttributesInput> {
    fn for_sdk(mut self) -> Self {
        to_sdk_key(&mut self.input.key);
        self.input.object_attributes = split_list(&self.input.object_attributes);
        self
    }
}

fn split_list(attributes: &[dto::ObjectAttributes]) -> Vec<dto::ObjectAttributes> {
    let names = attributes.iter().flat_map(|a| a.as_str().split(','));
    names.map(str::trim).filter(|n| !n.is_empty()).map(|n| dto::ObjectAttributes::from(n.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_separated_attribute_header_becomes_one_attribute_each() {
        let one_header = [dto::ObjectAttributes::from("ETag, ObjectSize,StorageClass".to_owned())];
        let each: Vec<String> = split_list(&one_header).iter().map(|a| a.as_str().to_owned()).collect();
        assert_eq!(each, ["ETag", "ObjectSize", "StorageClass"]);
        let repeated = [dto::ObjectAttributes::from_static("ETag"), dto::ObjectAttributes::from_static("Checksum")];
        assert_eq!(split_list(&repeated).len(), 2, "headers already one per attribute stay as they are");
    }
}

//! Thumbnails of PNG, JPEG, GIF and WebP images in the configured sizes (Synapse's
//! `thumbnail_sizes`), made on first request and kept next to the original. Decoding is
//! bounded in pixels and memory, and runs on the blocking pool a few at a time.

use std::io::Cursor;
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::config::{ThumbnailMethod, ThumbnailSize};

/// Decoders may allocate at most this much for one image.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
const JPEG_QUALITY: u8 = 80;

/// A thumbnail's bytes and content type.
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Why no thumbnail can be made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("not an image kith can thumbnail")]
    Unsupported,
    #[error("the image has {0} pixels, more than this server thumbnails")]
    TooLarge(u64),
    #[error("cannot read the image: {0}")]
    Invalid(String),
}

/// The configured size that best serves a request: the smallest of the requested method
/// at least as large as asked, else the largest of that method (any method if none is
/// configured for it).
pub fn choose(sizes: &[ThumbnailSize], width: u32, height: u32, method: ThumbnailMethod) -> Option<ThumbnailSize> {
    let same_method: Vec<ThumbnailSize> = sizes.iter().copied().filter(|s| s.method == method).collect();
    let candidates = if same_method.is_empty() { sizes.to_vec() } else { same_method };
    let area = |s: &ThumbnailSize| u64::from(s.width) * u64::from(s.height);
    let big_enough = candidates.iter().filter(|s| s.width >= width && s.height >= height).min_by_key(|s| area(s));
    big_enough.or_else(|| candidates.iter().max_by_key(|s| area(s))).copied()
}

/// The file name a thumbnail of this size is cached under (without its extension).
pub fn cache_name(size: ThumbnailSize) -> String {
    let method = match size.method {
        ThumbnailMethod::Crop => "crop",
        ThumbnailMethod::Scale => "scale",
    };
    format!("thumbnail-{}x{}-{method}", size.width, size.height)
}

/// Makes a thumbnail of the image at `source` (blocking: call from the blocking pool).
pub fn generate(source: &Path, size: ThumbnailSize, max_pixels: u64) -> Result<Thumbnail, ThumbnailError> {
    let image = decode(source, max_pixels)?;
    let (width, height) = (image.width(), image.height());
    let resized = match size.method {
        ThumbnailMethod::Crop => image.resize_to_fill(size.width, size.height, FilterType::Triangle),
        // Never upscale: a small image is its own scaled thumbnail.
        ThumbnailMethod::Scale if width <= size.width && height <= size.height => image,
        ThumbnailMethod::Scale => image.resize(size.width, size.height, FilterType::Triangle),
    };
    encode(resized)
}

fn decode(source: &Path, max_pixels: u64) -> Result<DynamicImage, ThumbnailError> {
    let invalid = |e: &dyn std::fmt::Display| ThumbnailError::Invalid(e.to_string());
    let reader = || -> Result<ImageReader<_>, ThumbnailError> {
        let mut reader =
            ImageReader::open(source).map_err(|e| invalid(&e))?.with_guessed_format().map_err(|e| invalid(&e))?;
        match reader.format() {
            Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) => {}
            _ => return Err(ThumbnailError::Unsupported),
        }
        let mut limits = Limits::default();
        limits.max_alloc = Some(MAX_DECODE_ALLOC);
        reader.limits(limits);
        Ok(reader)
    };
    let (width, height) = reader()?.into_dimensions().map_err(|e| invalid(&e))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ThumbnailError::TooLarge(pixels));
    }
    reader()?.decode().map_err(|e| invalid(&e))
}

/// PNG keeps transparency; anything opaque becomes a smaller JPEG.
fn encode(image: DynamicImage) -> Result<Thumbnail, ThumbnailError> {
    let mut bytes = Vec::new();
    let invalid = |e: image::ImageError| ThumbnailError::Invalid(e.to_string());
    if image.color().has_alpha() {
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).map_err(invalid)?;
        return Ok(Thumbnail { bytes, content_type: "image/png" });
    }
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
    image.to_rgb8().write_with_encoder(encoder).map_err(invalid)?;
    Ok(Thumbnail { bytes, content_type: "image/jpeg" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(width: u32, height: u32, method: ThumbnailMethod) -> ThumbnailSize {
        ThumbnailSize { width, height, method }
    }

    #[test]
    fn the_smallest_big_enough_size_of_the_method_is_chosen() {
        let sizes = [
            size(32, 32, ThumbnailMethod::Crop),
            size(96, 96, ThumbnailMethod::Crop),
            size(320, 240, ThumbnailMethod::Scale),
            size(640, 480, ThumbnailMethod::Scale),
        ];
        assert_eq!(choose(&sizes, 40, 40, ThumbnailMethod::Crop), Some(sizes[1]));
        assert_eq!(choose(&sizes, 500, 10, ThumbnailMethod::Scale), Some(sizes[3]));
        assert_eq!(
            choose(&sizes, 4000, 4000, ThumbnailMethod::Scale),
            Some(sizes[3]),
            "the largest when none is enough"
        );
        assert_eq!(choose(&sizes[2..], 10, 10, ThumbnailMethod::Crop), Some(sizes[2]), "another method if need be");
        assert_eq!(choose(&[], 10, 10, ThumbnailMethod::Crop), None);
    }
}

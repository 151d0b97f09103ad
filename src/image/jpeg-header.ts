// Reads a JPEG's size and EXIF orientation straight from its marker segments, without sharp. JPEG is
// most of what a crawl downloads, and on that path a sharp metadata() call costs a few percent of the
// whole resize; this walk costs microseconds. Anything unusual returns undefined and the caller asks
// sharp instead, so this never has to be complete, only right when it answers.

export interface JpegHeader {
  /** Stored size, from the frame header (SOFn). */
  readonly width: number;
  readonly height: number;
  /** EXIF orientation 1-8 (1 when absent or out of range, as libvips treats it). */
  readonly orientation: number;
  /** Bits per sample (8, or 12 for rare medical and camera files). */
  readonly precision: number;
  /** Colour components: 1 grey, 3 YCbCr or RGB, 4 CMYK or YCCK. */
  readonly components: number;
}

const EXIF_ID = [0x45, 0x78, 0x69, 0x66, 0x00, 0x00]; // "Exif\0\0"
const ORIENTATION_TAG = 0x0112;
const TYPE_SHORT = 3;

function isStartOfFrame(marker: number): boolean {
  // SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/** Size and orientation of a JPEG, or undefined when the header is not a plain, complete one. */
export function readJpegHeader(bytes: Uint8Array): JpegHeader | undefined {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let orientation = 1;
  let exifSeen = false;
  let i = 2;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) return undefined;
    const marker = bytes[i + 1]!;
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2; // TEM, RSTn: no length
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined; // EOI or scan before any frame header
    const length = (bytes[i + 2]! << 8) | bytes[i + 3]!;
    const start = i + 4;
    const end = i + 2 + length;
    if (length < 2 || end > bytes.length) return undefined;
    if (isStartOfFrame(marker)) {
      if (length < 8) return undefined;
      const precision = bytes[start]!;
      const height = (bytes[start + 1]! << 8) | bytes[start + 2]!;
      const width = (bytes[start + 3]! << 8) | bytes[start + 4]!;
      const components = bytes[start + 5]!;
      if (width === 0 || height === 0) return undefined; // height set later by a DNL marker
      return { width, height, orientation, precision, components };
    }
    if (marker === 0xe1 && !exifSeen && hasPrefix(bytes, start, end, EXIF_ID)) {
      exifSeen = true; // libexif reads the first Exif segment only
      orientation = exifOrientation(bytes.subarray(start + EXIF_ID.length, end)) ?? 1;
    }
    i = end;
  }
  return undefined;
}

function hasPrefix(bytes: Uint8Array, start: number, end: number, prefix: readonly number[]): boolean {
  if (end - start < prefix.length) return false;
  return prefix.every((b, k) => bytes[start + k] === b);
}

/** Orientation from a TIFF structure (the body of an Exif segment): IFD0 tag 0x0112. */
function exifOrientation(tiff: Uint8Array): number | undefined {
  if (tiff.length < 8) return undefined;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return undefined;
  const u16 = (at: number): number => (little ? tiff[at]! | (tiff[at + 1]! << 8) : (tiff[at]! << 8) | tiff[at + 1]!);
  const u32 = (at: number): number =>
    little
      ? (tiff[at]! | (tiff[at + 1]! << 8) | (tiff[at + 2]! << 16) | (tiff[at + 3]! << 24)) >>> 0
      : ((tiff[at]! << 24) | (tiff[at + 1]! << 16) | (tiff[at + 2]! << 8) | tiff[at + 3]!) >>> 0;
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return undefined;
  const count = u16(ifd);
  for (let k = 0; k < count; k++) {
    const entry = ifd + 2 + k * 12;
    if (entry + 12 > tiff.length) return undefined;
    if (u16(entry) !== ORIENTATION_TAG) continue;
    if (u16(entry + 2) !== TYPE_SHORT) return undefined;
    const value = u16(entry + 8);
    return value >= 1 && value <= 8 ? value : undefined;
  }
  return undefined;
}

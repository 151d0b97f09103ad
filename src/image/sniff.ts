// Decides from the first bytes whether a body can be an image this build decodes. Only the bytes
// count: servers send images as text/plain and HTML error pages as image/jpeg. SVG and other markup
// are refused on purpose: they are programs for a renderer, not pixels, and the datasets want photos.

/** Container families recognised by their magic bytes; sharp's metadata then confirms them. */
export type SniffedFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'heif';

function startsWith(bytes: Uint8Array, magic: readonly number[], at = 0): boolean {
  if (bytes.length < at + magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[at + i] !== magic[i]) return false;
  return true;
}

function ascii(text: string): number[] {
  return Array.from(text, (c) => c.charCodeAt(0));
}

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG = [0xff, 0xd8, 0xff];
const GIF87 = ascii('GIF87a');
const GIF89 = ascii('GIF89a');
const RIFF = ascii('RIFF');
const WEBP = ascii('WEBP');
const TIFF_LE = [0x49, 0x49, 0x2a, 0x00];
const TIFF_BE = [0x4d, 0x4d, 0x00, 0x2a];
const BIGTIFF_LE = [0x49, 0x49, 0x2b, 0x00];
const BIGTIFF_BE = [0x4d, 0x4d, 0x00, 0x2b];
const FTYP = ascii('ftyp');

/** The image family the magic bytes announce, or undefined when they announce none we decode. */
export function sniffImageFormat(bytes: Uint8Array): SniffedFormat | undefined {
  if (startsWith(bytes, JPEG)) return 'jpeg';
  if (startsWith(bytes, PNG)) return 'png';
  if (startsWith(bytes, GIF87) || startsWith(bytes, GIF89)) return 'gif';
  if (startsWith(bytes, RIFF) && startsWith(bytes, WEBP, 8)) return 'webp';
  if ([TIFF_LE, TIFF_BE, BIGTIFF_LE, BIGTIFF_BE].some((m) => startsWith(bytes, m))) return 'tiff';
  // ISO-BMFF (AVIF, HEIC): a box size then 'ftyp'; sharp's metadata tells AV1 from HEVC later.
  if (startsWith(bytes, FTYP, 4)) return 'heif';
  return undefined;
}

/** A short, human description of a body that is not an image, for the reject log. */
export function describeNonImage(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'the body is empty';
  const head = Buffer.from(bytes.subarray(0, 512)).toString('latin1');
  const text = head.replace(/^\uFEFF|^\xEF\xBB\xBF/, '').trimStart().toLowerCase();
  if (text.startsWith('<!doctype html') || text.startsWith('<html') || /<(head|body|title)[\s>]/.test(text)) {
    return 'the body is HTML, not an image';
  }
  if (text.startsWith('<svg') || (text.startsWith('<?xml') && text.includes('<svg'))) {
    return 'the body is SVG, which is not decoded (only raster images are kept)';
  }
  if (text.startsWith('<')) return 'the body is markup (XML or HTML), not an image';
  if (/^[\t\n\r\x20-\x7e]*$/.test(head.slice(0, 64))) return 'the body is text, not an image';
  const shown = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `the body starts with bytes ${shown}, which match no supported image format`;
}

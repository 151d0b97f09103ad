// The meaningless_text predicate: one table per sub-rule, a table of real captions that must pass,
// precision and recall on the labelled caption file, and totality (never throws, stays fast) on
// random and hostile strings.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluate, readLabelled } from '../scripts/meaningless-eval.js';
import {
  MEANINGLESS_RULE_CODES,
  isMeaningless,
  meaninglessReason,
  type MeaninglessRule,
} from '../src/filters/meaningless.js';
import { mulberry32 as prng } from '../src/core/random.js';

const RULE_CASES: Record<MeaninglessRule, string[]> = {
  empty: ['', ' ', '\t\n', '\u00a0\u00a0', '\u200b', '\ufeff  \u200d'],
  html: ['<img src="https://example.com/a.jpg">', '&nbsp;', '<p></p>', '<br/>', '&#160;&#160;', '&lt;br&gt;',
    '<div class="wp-caption"><img src="x.jpg" /></div>', '<img src="http://static.example.com/uploads/2018/', '<!-- image -->', '&amp;'],
  url: ['https://www.example.com/images/dog.jpg', 'http://example.com', 'www.flickr.com/photos/123@N00/456',
    '//cdn.example.net/a/b.png', 'example.com/img/42', 'data:image/png;base64,iVBORw0KGgo=', 'https://a.com/x https://b.com/y',
    `data:image/jpeg;base64,${'/9j/4AAQSkZJRgABAQ'.repeat(400)}`],
  uuid: ['550e8400-e29b-41d4-a716-446655440000', '{3F2504E0-4F89-11D3-9A0C-0305E82C3301}', '7c9e6679-7425-40de-944b-e07fc1f90ae7.jpg'],
  hash: ['d41d8cd98f00b204e9800998ecf8427e', '3f786850e387550fdab836ed7e6dc881de23001b', 'sha256:9f86d081884c7d659a2feaa0c55ad015',
    '8f14e45fceea167a5a36dedd4bea2543.jpg', 'aGVsbG8gd29ybGQgdGhpcyBpcyBh', 'Xk3p9QzR7tLm2VwB8yNc'],
  file_name: ['img 0.jpg', 'DSC_0123.JPG', 'IMG_20190101_123456', 'image (3).png', 'Screenshot 2020-01-01 at 10.00.00',
    'P1010123', 'GOPR0042', 'DSCN0042.JPG', 'DSCF1234', '_MG_9876.CR2', 'MVI_0021.MOV', 'IMG-20190812-WA0003.jpg',
    'WhatsApp Image 2021-03-04 at 12.34.56', 'Screen Shot 2018-06-12 at 3.45.12 PM', 'Screenshot_20200101-123456_Chrome',
    'PXL_20210904_181522123.jpg', 'GH010042.MP4', 'SAM_0456.JPG', 'IMG_1234 (2)', 'IMG_E0123', 'photo.jpg',
    'my_dog_on_the_beach.jpg', 'download.jpeg', 'Untitled design (12).png', '20190715_142233.jpg',
    '/uploads/2019/05/IMG_0042', 'C:\\Users\\me\\Pictures\\beach', 'FB_IMG_1569834012345.jpg', 'banner.jpg?v=12'],
  camera_default: ['untitled', 'image', 'photo', 'no description', 'thumbnail', 'placeholder', 'default', 'picture', 'img',
    'null', 'undefined', 'n/a', 'N/A', 'alt text', 'featured image', 'Featured Image.', '  PHOTO!  ', 'photo 3', 'Image 1',
    'Untitled-1', 'image1', 'the image', 'a photo', 'Fig. 3', 'Slide 12', 'no image available', 'Enter image description here',
    'Lorem ipsum dolor sit amet', '[object Object]', 'sans titre', 'Ohne Titel', 'copy of IMG_0042', '"Photo"', '[image]'],
  numbers_only: ['12345', '2019', '0001', '$29.99', '100%', '#1', '1/4', '12.05.2019', '300x250', '1920 × 1080 px', '12:30 PM', 'Ⅻ'],
  punctuation_only: ['...', '---', '?', '📷', '😍😍😍', '★★★★★', '"" ""', '•'],
};

/** Real captions that contain rule words, numbers, names or other scripts: all must pass. */
const KEEP = [
  'a photo of a dog', 'Image of the Eiffel Tower at night', 'DSC camera on a table', '2019 Ford Mustang GT', 'Apollo 11',
  '404 error page illustration', 'iPhone 12 Pro Max', 'Canon EOS 5D Mark IV', 'Samsung-Galaxy-S21-Ultra-5G-Phantom',
  'GoPro HERO9 Black', 'DJI Mavic Air 2', 'Ruger GP100', 'Sam 2019', 'AC/DC', 'Booking.com', 'Blade Runner 2049', 'H2O', 'x86',
  'Fig', 'Avatar', 'Untitled (Cowboy), 1989', 'Screenshot of the new Gmail interface', 'Tom &amp; Jerry', '<b>Red dress</b>',
  'Sunset over the lake.jpg', 'Image result for cute puppies', 'Photo: a firefighter in California', 'Chanel No. 5',
  'Civil War photo', 'I <3 NY', 'x<y', 'pixel art of a castle', 'null pointer exception meme', '东京的夜景', 'Кошка спит',
  '富士山と桜', 'منظر طبيعي', '서울의 야경', 'ThisIsMyHolidayPhoto2019Final', 'A', 'Paris', 'Sunset.', `a ${'very '.repeat(2000)}long caption`,
];

test('each sub-rule catches its table, and names itself', () => {
  for (const rule of MEANINGLESS_RULE_CODES) {
    assert.ok(RULE_CASES[rule].length > 0, `no cases for ${rule}`);
    for (const text of RULE_CASES[rule]) {
      assert.equal(meaninglessReason(text), rule, `${JSON.stringify(text.slice(0, 60))} should be ${rule}`);
      assert.equal(isMeaningless(text), true);
    }
  }
});

test('real captions that merely contain rule words, numbers or model names pass', () => {
  for (const text of KEEP) {
    assert.equal(meaninglessReason(text), undefined, `${JSON.stringify(text.slice(0, 60))} should pass`);
    assert.equal(isMeaningless(text), false);
  }
});

test('labelled captions: precision of drop >= 0.98, recall >= 0.9', (t) => {
  const rows = readLabelled();
  const drop = rows.filter((r) => r.label === 'drop').length;
  assert.ok(rows.length >= 200, `only ${rows.length} labelled captions`);
  assert.ok(drop >= rows.length * 0.4 && drop <= rows.length * 0.6, `${drop} of ${rows.length} labelled drop`);
  const e = evaluate(rows);
  const line = `precision=${e.precision.toFixed(4)} recall=${e.recall.toFixed(4)} on ${rows.length} captions`;
  console.log(line);
  t.diagnostic(line);
  for (const m of e.wronglyDropped) t.diagnostic(`wrongly dropped (line ${m.line}, ${m.reason}): ${JSON.stringify(m.caption)}`);
  for (const m of e.wronglyKept) t.diagnostic(`wrongly kept (line ${m.line}): ${JSON.stringify(m.caption)}`);
  assert.ok(e.precision >= 0.98, line);
  assert.ok(e.recall >= 0.9, line);
});


const PIECES = ['<', '>', '&', ';', '#', '<img ', '</p>', '&nbsp;', '&#x', 'IMG_', 'DSC', '.jpg', '.png?', 'http://', 'www.',
  '_', '-', ' ', '\t', '(', ')', '"', '0', '123', '2020-01-01', 'photo', 'untitled', 'x', '{', '}', '/', '\\', '\u200b', '\ud800', '\udfff'];

function randomString(random: () => number): string {
  const n = Math.floor(random() * 60);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = random();
    if (r < 0.35) s += PIECES[Math.floor(random() * PIECES.length)]!;
    else if (r < 0.6) s += String.fromCharCode(Math.floor(random() * 0x10000)); // lone surrogates included
    else if (r < 0.8) s += String.fromCodePoint(Math.floor(random() * 0x110000));
    else s += String.fromCharCode(32 + Math.floor(random() * 95));
  }
  return s;
}

test('never throws: 5,000 random unicode strings, and the answer is consistent', () => {
  const random = prng(20240601);
  const codes = new Set<string>(MEANINGLESS_RULE_CODES);
  for (let i = 0; i < 5000; i++) {
    const s = randomString(random);
    let reason: MeaninglessRule | undefined;
    assert.doesNotThrow(() => {
      reason = meaninglessReason(s);
    }, `threw on ${JSON.stringify(s)}`);
    assert.ok(reason === undefined || codes.has(reason), `unknown reason ${String(reason)}`);
    assert.equal(isMeaningless(s), reason !== undefined);
    assert.equal(meaninglessReason(s), reason, 'pure: same input, same answer');
  }
});

test('hostile long inputs finish quickly (no quadratic regular expression)', () => {
  const hostile = [
    '<!--'.repeat(1000),
    '<!--'.repeat(250_000),
    '"'.repeat(3999) + 'a',
    '"'.repeat(100_000) + 'a',
    '<a '.repeat(1300),
    'a.'.repeat(1999) + 'jpg',
    `http://${'a.'.repeat(1999)}com/`,
    '&#1'.repeat(1000),
    '_1'.repeat(1999),
    'x'.repeat(1_000_000),
  ];
  const start = performance.now();
  for (const s of hostile) meaninglessReason(s);
  const ms = performance.now() - start;
  assert.ok(ms < 3000, `hostile inputs took ${ms.toFixed(0)} ms`);
});

// The BPE tokenizer against CLIP's definition. Expected ids are worked out here from that definition
// (the byte table, the vocabulary layout, lowest-rank-first merging), not by asking the tokenizer.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { BpeTokenizer } from '../src/train/tokenizer.js';
import { cleanCaption, htmlUnescape } from '../src/train/text-clean.js';

// ---- CLIP's definition, written out independently ----

/** bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest get U+0100 + n in byte
 * order; the vocabulary lists the printable ones first, then the others. */
function clipByteChars(): { charOf: (b: number) => string; order: string[] } {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const chars = new Map<number, string>();
  let n = 0;
  for (let b = 0; b < 256; b++) chars.set(b, keep(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++));
  const bytes = [...Array(256).keys()];
  const order = [...bytes.filter(keep), ...bytes.filter((b) => !keep(b))].map((b) => chars.get(b)!);
  return { charOf: (b) => chars.get(b)!, order };
}

const BYTES = clipByteChars();

/** CLIP's vocabulary for a merges list: bytes, bytes + "</w>", one entry per merge, BOS, EOS. */
function clipVocab(merges: [string, string][]): Map<string, number> {
  const list = [...BYTES.order, ...BYTES.order.map((c) => `${c}</w>`), ...merges.map(([a, b]) => a + b), '<|startoftext|>', '<|endoftext|>'];
  return new Map(list.map((s, i) => [s, i]));
}

/** The byte-characters of a string's UTF-8. */
function byteChars(s: string): string[] {
  return [...Buffer.from(s, 'utf8')].map((b) => BYTES.charOf(b));
}

/** Ids of symbols spelled out by hand. */
function idsOf(vocab: Map<string, number>, symbols: string[]): number[] {
  return symbols.map((s) => {
    const id = vocab.get(s);
    assert.notEqual(id, undefined, `symbol ${s} is in the vocabulary`);
    return id!;
  });
}

// A small merges file. The comments give what each merge builds.
const MERGES: [string, string][] = [
  ['h', 'e'], // he
  ['l', 'l'], // ll
  ['he', 'll'], // hell
  ['hell', 'o</w>'], // hello</w>
  ['w', 'o'], // wo
  ['r', 'l'], // rl
  ['wo', 'rl'], // worl
  ['worl', 'd</w>'], // world</w>
  ["'", 't</w>'], // 't</w>
  ['d', 'o'], // do
  ['do', 'n</w>'], // don</w>
  ['!', '!'], // !!
  ['!!', '!</w>'], // !!!</w>
  ['l', 'l</w>'], // ll</w>   (rank 13)
  ['e', 'l'], // el         (rank 14: loses to "l l</w>" in "ell")
  ['c', 'a'], // ca
  ['ca', 'f'], // caf
  ['caf', 'Ã'], // cafÃ   (é is bytes C3 A9: "Ã" "©")
  ['cafÃ', '©</w>'], // café</w>
];
const VOCAB = clipVocab(MERGES);

let dir: string;
let tok: BpeTokenizer;
let mergesPath: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'filip-tok-'));
  mergesPath = join(dir, 'merges.txt');
  await writeFile(mergesPath, `#version: 0.2\n${MERGES.map(([a, b]) => `${a} ${b}`).join('\n')}\n`);
  tok = await BpeTokenizer.fromMergesFile(mergesPath);
});
after(() => rm(dir, { recursive: true, force: true }));

describe('vocabulary layout', () => {
  test('size is 512 + merges + 2; BOS and EOS are the last two ids', () => {
    assert.equal(tok.vocabSize, 512 + MERGES.length + 2);
    assert.equal(tok.bosId, tok.vocabSize - 2);
    assert.equal(tok.eosId, tok.vocabSize - 1);
    assert.equal(tok.idToToken(tok.bosId), '<|startoftext|>');
    assert.equal(tok.idToToken(tok.eosId), '<|endoftext|>');
  });

  test('id 0 is "!" and 256 is "!</w>", as in CLIP', () => {
    assert.equal(tok.idToToken(0), '!');
    assert.equal(tok.idToToken(256), '!</w>');
    assert.deepEqual(tok.encode('a'), [VOCAB.get('a</w>')]);
  });

  test('CLIP sizes: 48,894 merges give 49,408 ids, BOS 49406, EOS 49407', () => {
    // 48,900 merges, each of two byte-characters: more than CLIP reads.
    const merges: [string, string][] = [];
    for (const a of BYTES.order) for (const b of BYTES.order) if (merges.length < 48900) merges.push([a, b]);
    const big = BpeTokenizer.fromMerges(merges);
    assert.equal(big.vocabSize, 49408, 'CLIP reads only the first 48,894 merges');
    assert.equal(big.bosId, 49406);
    assert.equal(big.eosId, 49407);
  });
});

describe('encode: BPE by merge rank', () => {
  const cases: [string, string, string[]][] = [
    ['whole words', 'hello world', ['hello</w>', 'world</w>']],
    ['lower-cased first', 'HeLLo WORLD', ['hello</w>', 'world</w>']],
    ['no merge applies: bytes', 'xyz', ['x', 'y', 'z</w>']],
    ['lowest rank wins: "l l</w>" (13) before "e l" (14)', 'ell', ['e', 'll</w>']],
    ['merges apply inside longer words', 'hellos', ['hell', 'o', 's</w>']],
    ['accented letters as UTF-8 bytes, merged', 'café', ['cafÃ©</w>']],
    ['accents without a merge: two bytes', 'é', ['Ã', '©</w>']],
  ];
  for (const [name, text, symbols] of cases) {
    test(name, () => assert.deepEqual(tok.encode(text), idsOf(VOCAB, symbols)));
  }
});

describe("CLIP's edge cases", () => {
  test('digits are split one per token: "2019" is 4 tokens', () => {
    assert.deepEqual(tok.encode('2019'), idsOf(VOCAB, ['2</w>', '0</w>', '1</w>', '9</w>']));
    assert.deepEqual(tok.encode('in 2019'), idsOf(VOCAB, ['i', 'n</w>', '2</w>', '0</w>', '1</w>', '9</w>']));
  });

  test('contractions: "don\'t" is "don" + "\'t"', () => {
    assert.deepEqual(tok.encode("don't"), idsOf(VOCAB, ['don</w>', "'t</w>"]));
    // ftfy straightens the curly apostrophe first
    assert.deepEqual(tok.encode('don\u2019t'), tok.encode("don't"));
    assert.deepEqual(tok.encode("DON'T"), tok.encode("don't"));
  });

  test('a punctuation run is one pre-token: "!!!" is one token', () => {
    assert.deepEqual(tok.encode('!!!'), idsOf(VOCAB, ['!!!</w>']));
    assert.deepEqual(tok.encode('hello!!!'), idsOf(VOCAB, ['hello</w>', '!!!</w>']));
    // without a merge, a run stays one word: its bytes, "</w>" only on the last
    assert.deepEqual(tok.encode('?!'), idsOf(VOCAB, ['?', '!</w>']));
  });

  const foreign: [string, string][] = [
    ['Cyrillic', 'привет'],
    ['CJK', '東京タワー'],
    ['emoji', '😀'],
    ['Greek with final sigma', 'οδος'],
  ];
  for (const [name, text] of foreign) {
    test(`non-Latin letters fall back to bytes and decode back: ${name}`, () => {
      const chars = byteChars(text);
      const symbols = [...chars.slice(0, -1), `${chars.at(-1)}</w>`];
      assert.deepEqual(tok.encode(text), idsOf(VOCAB, symbols));
      assert.equal(tok.decode(tok.encode(text)), `${text} `);
    });
  }

  test('decode joins words with spaces and round-trips mixed text', () => {
    assert.equal(tok.decode(tok.encode('Hello,   Привет  world!!!')), 'hello , привет world !!! ');
  });

  const entities: [string, string, string][] = [
    ['&amp;', 'a &amp; b', 'a & b'],
    ['&lt;', '&lt;3', '<3'],
    ['numeric', '&#39;s &#x41;', "'s a"],
    ['double-escaped', '&amp;quot;x&amp;quot;', '"x"'],
    ['legacy name without ";"', '&copy 2020', '© 2020'],
    ['&nbsp; is whitespace', 'a&nbsp;&nbsp;b', 'a b'],
    ['unknown entity stays', '&bogus; x', '&bogus; x'],
  ];
  for (const [name, text, same] of entities) {
    test(`html entities are unescaped before splitting: ${name}`, () => {
      assert.deepEqual(tok.encode(text), tok.encode(same));
      assert.notDeepEqual(tok.encode(text), [], 'the text has tokens');
    });
  }

  const spaces: [string, string][] = [
    ['runs of spaces', '  hello    world  '],
    ['tabs and newlines', 'hello\t\n\r\nworld'],
    ['no-break and ideographic spaces', 'hello\u00a0\u3000world'],
    ['line and paragraph separators, thin space', 'hello\u2028\u2029\u2009world'],
  ];
  for (const [name, text] of spaces) {
    test(`whitespace is collapsed: ${name}`, () => {
      assert.deepEqual(tok.encode(text), idsOf(VOCAB, ['hello</w>', 'world</w>']));
    });
  }

  test('empty and blank texts have no tokens', () => {
    assert.deepEqual(tok.encode(''), []);
    assert.deepEqual(tok.encode(' \t\n '), []);
  });

  test('the special-token strings in a text map to the special ids, as in CLIP', () => {
    assert.deepEqual(tok.encode('hello<|endoftext|>'), [VOCAB.get('hello</w>'), tok.eosId]);
  });
});

describe('tokenize: batches with [BOS], [EOS], padding and lengths', () => {
  test('rows are [BOS] tokens [EOS], padded with 0; lengths mark the real tokens', () => {
    const { ids, lengths, contextLength } = tok.tokenize(['hello world', '!!'], 8);
    assert.equal(contextLength, 8);
    assert.deepEqual([...ids.subarray(0, 8)], [tok.bosId, VOCAB.get('hello</w>'), VOCAB.get('world</w>'), tok.eosId, 0, 0, 0, 0]);
    // "!!" is "!" + "!</w>": its first token is id 0, the same id as padding; only `lengths` tells them apart
    assert.deepEqual([...ids.subarray(8, 16)], [tok.bosId, 0, 256, tok.eosId, 0, 0, 0, 0]);
    assert.deepEqual([...lengths], [4, 4]);
    const mask = [...ids.subarray(8, 16)].map((_, t) => t < lengths[1]!);
    assert.deepEqual(mask, [true, true, true, true, false, false, false, false]);
  });

  test('the default context is 77 and truncation keeps [EOS] last', () => {
    const long = Array(200).fill('hello').join(' ');
    const { ids, lengths, contextLength } = tok.tokenize([long, 'world']);
    assert.equal(contextLength, 77);
    assert.equal(ids.length, 2 * 77);
    assert.equal(lengths[0], 77);
    assert.equal(ids[0], tok.bosId);
    assert.equal(ids[76], tok.eosId, '[EOS] is the last token of a cut row');
    assert.ok([...ids.subarray(1, 76)].every((id) => id === VOCAB.get('hello</w>')));
    assert.equal(lengths[1], 3);
  });

  test('an empty text is [BOS][EOS]', () => {
    const { ids, lengths } = tok.tokenize([''], 4);
    assert.deepEqual([...ids], [tok.bosId, tok.eosId, 0, 0]);
    assert.deepEqual([...lengths], [2]);
  });

  test('a context shorter than 2 is an invalid option', () => {
    assert.throws(() => tok.tokenize(['x'], 1), (e: FilipError) => e.code === 'FILIP_ERR_INVALID_OPTION');
  });
});

describe('loading and saving', () => {
  test('a gzipped merges file gives the same tokenizer', async () => {
    const gz = join(dir, 'merges.txt.gz');
    await writeFile(gz, zlib.gzipSync(`#version: 0.2\n${MERGES.map((m) => m.join(' ')).join('\n')}\n`));
    const fromGz = await BpeTokenizer.fromMergesFile(gz);
    assert.equal(fromGz.vocabSize, tok.vocabSize);
    assert.deepEqual(fromGz.encode('hello café world 2019'), tok.encode('hello café world 2019'));
  });

  test('maxMerges reads only the first merges, as CLIP slices its file', async () => {
    const few = await BpeTokenizer.fromMergesFile(mergesPath, { maxMerges: 3 });
    assert.equal(few.vocabSize, 512 + 3 + 2);
    assert.deepEqual(few.encode('hello'), idsOf(clipVocab(MERGES.slice(0, 3)), ['hell', 'o</w>']));
  });

  test('toJSON / fromJSON round-trip through JSON text', () => {
    const back = BpeTokenizer.fromJSON(JSON.parse(JSON.stringify(tok)));
    assert.equal(back.vocabSize, tok.vocabSize);
    const text = "Hello world, don't stop!!! 2019 café привет";
    assert.deepEqual(back.encode(text), tok.encode(text));
  });

  test('fromMerges equals the file', () => {
    assert.deepEqual(BpeTokenizer.fromMerges(MERGES).encode('hello world'), tok.encode('hello world'));
  });
});

describe('bad inputs', () => {
  const files: [string, string | Buffer, number | undefined][] = [
    ['no header line', 'h e\nl l\n', 1],
    ['a line with one symbol', '#version: 0.2\nh e\nll\n', 3],
    ['a line with three symbols', '#version: 0.2\nh e\nl l x\n', 3],
    ['a blank line in the middle', '#version: 0.2\nh e\n\nl l\n', 3],
    ['a symbol outside the byte alphabet (SentencePiece)', '#version: 0.2\nh e\n\u2581t he\n', 3],
    ['a raw space or control inside a symbol', '#version: 0.2\nh e\nh\u0001 e\n', 3],
    ['not UTF-8', Buffer.from([0x23, 0x0a, 0xff, 0xfe, 0x20, 0x61, 0x0a]), undefined],
    ['broken gzip', Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02]), undefined],
  ];
  for (const [name, content, line] of files) {
    test(`${name} -> FILIP_ERR_TOKENIZER naming the file${line === undefined ? '' : ` and line ${line}`}`, async () => {
      const file = join(dir, `bad-${name.replace(/\W+/g, '-')}.txt`);
      await writeFile(file, content);
      await assert.rejects(BpeTokenizer.fromMergesFile(file), (e: FilipError) => {
        assert.equal(e.code, 'FILIP_ERR_TOKENIZER');
        assert.equal(e.file, file);
        if (line !== undefined) assert.equal(e.row, line);
        return true;
      });
    });
  }

  test('a missing file -> FILIP_ERR_TOKENIZER naming it', async () => {
    const file = join(dir, 'nope.txt.gz');
    await assert.rejects(BpeTokenizer.fromMergesFile(file), (e: FilipError) => e.code === 'FILIP_ERR_TOKENIZER' && e.file === file);
  });

  const json: [string, unknown][] = [
    ['null', null],
    ['wrong format tag', { format: 'gpt2', version: 1, merges: [] }],
    ['wrong version', { format: 'filip-bpe', version: 2, merges: [] }],
    ['a merge that is not two symbols', { format: 'filip-bpe', version: 1, merges: ['h e', 'hel'] }],
    ['a merge that is not a string', { format: 'filip-bpe', version: 1, merges: [['h', 'e']] }],
  ];
  for (const [name, value] of json) {
    test(`fromJSON: ${name} -> FILIP_ERR_TOKENIZER`, () => {
      assert.throws(() => BpeTokenizer.fromJSON(value), (e: FilipError) => e.code === 'FILIP_ERR_TOKENIZER');
    });
  }

  const options: [string, object][] = [
    ['unknown option', { maxMerge: 3 }],
    ['negative maxMerges', { maxMerges: -1 }],
    ['fractional cacheSize', { cacheSize: 1.5 }],
  ];
  for (const [name, opts] of options) {
    test(`options: ${name} -> FILIP_ERR_INVALID_OPTION`, () => {
      assert.throws(() => BpeTokenizer.fromMerges(MERGES, opts), (e: FilipError) => e.code === 'FILIP_ERR_INVALID_OPTION');
    });
  }

  test('decoding an id outside the vocabulary -> FILIP_ERR_TOKENIZER', () => {
    assert.throws(() => tok.decode([tok.vocabSize]), (e: FilipError) => e.code === 'FILIP_ERR_TOKENIZER');
  });
});

describe('text cleaning (Python html.unescape and ftfy rules)', () => {
  const unescapes: [string, string][] = [
    ['&amp;', '&'],
    ['&ampx', '&x'], // the longest legacy name that prefixes the reference
    ['&notit;', '¬it;'],
    ['&notin;', '∉'],
    ['&#65', 'A'],
    ['&#x41;', 'A'],
    ['&#0;', '\ufffd'],
    ['&#x80;', '€'], // Windows-1252 reading of C1 references
    ['&#xD800;', '\ufffd'],
    ['&#x110000;', '\ufffd'],
    ['&#1;', ''],
    ['&bogus;', '&bogus;'],
    ['a & b', 'a & b'],
  ];
  for (const [text, want] of unescapes) {
    test(`htmlUnescape(${JSON.stringify(text)})`, () => assert.equal(htmlUnescape(text), want));
  }

  const cleans: [string, string, string][] = [
    ['curly quotes straightened', '\u201cit\u2019s\u201d', '"it\'s"'],
    ['ligatures split', '\ufb01ne \ufb02ow', 'fine flow'],
    ['full-width narrowed', '\uff28\uff45\uff4c\uff4c\uff4f\uff01', 'hello!'],
    ['combining accent composed (NFC)', 'cafe\u0301', 'caf\u00e9'],
    ['controls and BOM removed', '\ufeffa\u0000b\u0007c', 'abc'],
    ['terminal colour codes removed', '\u001b[31mred\u001b[0m', 'red'],
    ['entities not unescaped by ftfy when the text has "<", but still by html.unescape twice', '<b>&amp;amp;</b>', '<b>&</b>'],
    ['ftfy unescapes repeatedly, then html.unescape twice more', '&amp;amp;amp;amp;', '&'],
    ['upper-cased entity names', '&NTILDE;', 'ñ'],
    ['C1 controls read as Windows-1252 (NEL is an ellipsis)', 'a\u0085b\u0093c\u0094', 'a\u2026b"c"'],
  ];
  for (const [name, text, want] of cleans) {
    test(`cleanCaption: ${name}`, () => assert.equal(cleanCaption(text), want));
  }
});

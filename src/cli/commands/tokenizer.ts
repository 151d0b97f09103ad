// `filip tokenizer train` (learn BPE merges from shard captions) and `filip tokenizer encode` (show
// the ids and pieces of a text under a merges file, CLIP's or a trained one).
import type { Argv } from 'yargs';
import { DEFAULT_VOCAB_SIZE, trainTokenizer } from '../../train/bpe-train.js';
import { BpeTokenizer, CLIP_CONTEXT_LENGTH, CLIP_MAX_MERGES } from '../../train/tokenizer.js';

interface TrainArgs {
  shards: string;
  out: string;
  vocabSize: number;
  minPairCount: number;
}

const trainSubcommand = {
  command: 'train',
  describe: 'learn BPE merges from the captions (and back-translations) of a folder of shards',
  builder: (y: Argv) =>
    y
      .option('shards', { type: 'string', demandOption: true, describe: 'folder of .parquet shards (ingest, filter or shard output)' })
      .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'merges file to write (.txt, or .txt.gz to gzip)' })
      .option('vocab-size', { type: 'number', default: DEFAULT_VOCAB_SIZE, describe: 'vocabulary to aim for: 512 byte symbols + merges + 2 specials' })
      .option('min-pair-count', { type: 'number', default: 2, describe: 'stop when no pair occurs this often' }),
  handler: async (a: TrainArgs) => {
    const log = (line: string) => process.stderr.write(`${line}\n`);
    const s = await trainTokenizer({
      shards: a.shards,
      out: a.out,
      vocabSize: a.vocabSize,
      minPairCount: a.minPairCount,
      onShard: (file, rows) => log(`read ${file}: ${rows} rows`),
      onProgress: (p) => log(`merges ${p.merges}/${p.target}, last pair seen ${p.lastCount} times, ${p.seconds.toFixed(1)} s`),
    });
    const why = s.stoppedBy === 'vocab_size' ? 'reached the size asked for' : `no pair occurs ${a.minPairCount} times any more`;
    process.stdout.write(
      [
        `read ${s.rows} rows from ${s.files} shard files (${s.filesWithBackTranslations} with back-translations): ${s.texts} texts, ${s.tokens} words, ${s.words} distinct`,
        `learned ${s.merges.length} merges in ${s.seconds.toFixed(2)} s (${Math.round(s.mergesPerSecond)} merges/s); stopped: ${why}`,
        `vocabulary size ${s.vocabSize} (asked for ${s.requestedVocabSize}); [BOS] = ${s.vocabSize - 2}, [EOS] = ${s.vocabSize - 1}`,
        `wrote ${s.out}`,
      ].join('\n') + '\n',
    );
    if (s.merges.length > CLIP_MAX_MERGES) {
      log(`note: more than ${CLIP_MAX_MERGES} merges; load this file with maxMerges >= ${s.merges.length} (CLIP's loader stops at ${CLIP_MAX_MERGES})`);
    }
  },
};

interface EncodeArgs {
  merges: string;
  text: string[];
  contextLength: number;
  maxMerges: number;
}

const encodeSubcommand = {
  command: 'encode <text..>',
  describe: 'print the token ids and pieces of each text under a merges file',
  builder: (y: Argv) =>
    y
      .positional('text', { type: 'string', array: true, describe: 'texts to encode' })
      .option('merges', { type: 'string', demandOption: true, describe: 'merges file (CLIP bpe_simple_vocab_16e6.txt.gz or a trained one)' })
      .option('context-length', { type: 'number', default: CLIP_CONTEXT_LENGTH, describe: 'row length, [BOS] and [EOS] included' })
      .option('max-merges', { type: 'number', default: CLIP_MAX_MERGES, describe: 'merges read from the file' }),
  handler: async (a: EncodeArgs) => {
    const tok = await BpeTokenizer.fromMergesFile(a.merges, { maxMerges: a.maxMerges });
    const batch = tok.tokenize(a.text, a.contextLength);
    a.text.forEach((text, row) => {
      const ids = Array.from(batch.ids.subarray(row * batch.contextLength, row * batch.contextLength + batch.lengths[row]!));
      const pieces = ids.map((id) => tok.idToToken(id));
      process.stdout.write(`${JSON.stringify({ text, length: batch.lengths[row], ids, pieces })}\n`);
    });
  },
};

export const tokenizerCommand = {
  command: 'tokenizer <command>',
  describe: 'train or inspect the BPE tokenizer',
  builder: (y: Argv) => y.command(trainSubcommand as never).command(encodeSubcommand as never).demandCommand(1),
  handler: () => {},
};

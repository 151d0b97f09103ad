// `filip align`: the word-patch alignment picture of a checkpoint, one PNG per image: each patch
// labelled with the position of its best-matching prompt token, the highlighted words' patches boxed.
// FILIP_ERR_ errors print as one line with exit status 2.
import type { Argv } from 'yargs';

import { DEFAULT_ALIGN_OPTIONS as D, runAlign, type AlignInput } from '../../train/align.js';
import { BACKEND_CHOICES } from '../../train/backend.js';

interface AlignArgs {
  checkpoint: string;
  image: string[];
  prompt: string;
  out?: string;
  highlight?: string[];
  cell?: number;
  backend?: string;
}

const d = (value: unknown) => `(default ${JSON.stringify(value)})`;

export const alignCommand = {
  command: 'align',
  describe: 'draw which prompt token each image patch matches best (FILIP word-patch alignment)',
  builder: (y: Argv) =>
    y
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'run folder (newest checkpoint) or checkpoint folder' })
      .option('image', { type: 'string', array: true, demandOption: true, describe: 'image file(s)' })
      .option('prompt', { type: 'string', demandOption: true, describe: 'the text, e.g. "a photo of a red circle."' })
      .option('out', { alias: 'o', type: 'string', describe: `folder for NAME.align.png ${d(D.out)}` })
      .option('highlight', { type: 'string', array: true, describe: "words of the prompt to box (default: the prompt's last word)" })
      .option('cell', { type: 'number', describe: `output pixels per patch ${d(D.cell)}` })
      .option('backend', { type: 'string', choices: BACKEND_CHOICES, describe: d(D.backend) }),
  handler: async (a: AlignArgs) => {
    const input: AlignInput = {
      checkpoint: a.checkpoint,
      images: a.image,
      prompt: a.prompt,
      out: a.out,
      highlight: a.highlight,
      cell: a.cell,
      backend: a.backend as AlignInput['backend'],
    };
    await runAlign(input, (line) => process.stdout.write(`${line}\n`));
  },
};

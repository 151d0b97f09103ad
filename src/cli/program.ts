// What both programs (filip-data, filip) share around yargs: the flag checks below, the usage-error
// output, and one line with a stable code and exit status 2 for a FilipError.
//
// Two slips yargs lets through, stopped at the flag the user typed:
// - `--timeout abc` for a number option parses to NaN; the stage's validator would then name its own
//   field ("connectTimeoutMs") rather than the flag;
// - `--seed` or `--samples-per-shard` with no value (a script's `--seed $SEED` with SEED empty) parses
//   to nothing, and the run goes on with the default as if the flag were absent.

import yargs, { type Argv, type CommandModule } from 'yargs';
import { FilipError } from '../core/errors.js';
import { FILIP_VERSION } from '../fetch/options.js';

/**
 * Adds a global check on what yargs lets through, naming the flag: a number option that parsed to
 * NaN; a number or string option given with no value (`--flag` last, or followed by another flag;
 * `--flag=` or a blank value; the same for its one-letter alias, `-o`); and one given twice (yargs
 * would make an array of it, which the stage reports as a wrong type, or a NaN after a unit
 * conversion). `raw` is the argument list yargs parses.
 */
export function numbersMustParse<T>(y: Argv<T>, raw: readonly string[]): Argv<T> {
  return y.check((argv) => {
    const options = (y as unknown as { getOptions(): { number: string[]; string: string[]; array: string[]; alias: Record<string, string[]> } }).getOptions();
    for (const name of options.number) {
      const value = (argv as Record<string, unknown>)[name];
      const values = Array.isArray(value) ? value : [value];
      if (values.some((v) => typeof v === 'number' && Number.isNaN(v))) return `--${name} must be a number`;
    }
    const arrays = new Set(options.array);
    for (const name of new Set([...options.number, ...options.string])) {
      if (name.length === 1) continue; // an alias: checked with its option
      const spellings = [`--${name}`, ...(options.alias[name] ?? []).map((a) => (a.length === 1 ? `-${a}` : `--${a}`))];
      let given = 0;
      for (let i = 0; i < raw.length; i++) {
        const arg = raw[i]!;
        if (arg === '--') break;
        const spelled = spellings.find((sp) => arg === sp || arg.startsWith(`${sp}=`));
        if (spelled === undefined) continue;
        given++;
        const inline = arg.length > spelled.length ? arg.slice(spelled.length + 1) : undefined;
        const next = inline ?? raw[i + 1];
        const missing = next === undefined || next.trim() === '' || (inline === undefined && next.startsWith('-') && !/^-\.?\d/.test(next));
        if (missing) return `${spelled} needs a value`;
      }
      if (given > 1 && !arrays.has(name)) return `--${name} is given ${given} times; give it once`;
    }
    return true;
  }, true);
}

/** The range of a flag that the command scales before the stage sees it (seconds to ms, MiB to bytes). */
export interface FlagRange {
  readonly min: number;
  readonly max?: number;
  /** What the flag counts, for the message: 'seconds', 'MiB'. */
  readonly unit: string;
}

/**
 * A yargs check for flags that a command converts into the stage's units (`--timeout` seconds into
 * `connectTimeoutMs`): the stage's own error would name its field and show the converted value, so
 * these are checked in the units the user typed, as a usage error.
 */
export function inRange(ranges: Readonly<Record<string, FlagRange>>): (argv: Record<string, unknown>) => true | string {
  return (argv) => {
    for (const [flag, r] of Object.entries(ranges)) {
      const value = argv[flag];
      if (typeof value !== 'number') continue;
      if (value < r.min || (r.max !== undefined && value > r.max)) {
        return `--${flag} must be ${r.max === undefined ? `at least ${r.min}` : `from ${r.min} to ${r.max}`} ${r.unit}, got ${value}`;
      }
    }
    return true;
  };
}

/**
 * A yargs check: the flags in `flags` do something only when the option `needed` is given (a boolean
 * on, or a value such as --queue's URL), so typing one without it is a usage error rather than a
 * setting silently ignored (`ingest --min-side 300` without `--filter` filtered nothing; `ingest
 * --near-dup-index replica` without `--queue` ran with the in-memory index). `raw` defaults to this
 * process's arguments.
 */
export function onlyWith(needed: string, flags: readonly string[], hint: string, raw: readonly string[] = process.argv.slice(2)): (argv: Record<string, unknown>) => true | string {
  return (argv) => {
    if (argv[needed] !== undefined && argv[needed] !== false) return true;
    const typed = flags.find((f) => raw.some((a) => a === `--${f}` || a.startsWith(`--${f}=`)));
    return typed === undefined ? true : `--${typed} applies only with --${needed}${hint}`;
  };
}

/** One-letter aliases the commands give flags (`-o` for --output and --out). */
const SHORT_FLAGS: Readonly<Record<string, string>> = { output: 'o', out: 'o' };

/** `saveEvery` -> `save-every`, `augment.views` -> `augment-views`. */
function kebab(field: string): string {
  return field.replace(/\./g, '-').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * The flag a user typed that set the option `field`, so an option error names it and not the stage's
 * own field: `field` in kebab case (`saveEvery` is --save-every), or one of `fieldFlags[field]`
 * (`keepCheckpoints` is --keep; `concurrency` is --concurrency in ingest but --translate-concurrency
 * in shard), whichever appears in `argv`; when none does, the first listed flag (a flag required by
 * another one was left out); undefined for a field with no listed flag that was not typed.
 */
export function flagOf(field: string, argv: readonly string[], fieldFlags: Readonly<Record<string, readonly string[]>> = {}): string | undefined {
  // One element of a list option (`templates[1]`) is set by the list's flag.
  const name = field.replace(/\[\d+\]$/, '');
  const listed = fieldFlags[name] ?? [];
  const typed = [...listed, kebab(name)].find((flag) =>
    argv.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`) || (SHORT_FLAGS[flag] !== undefined && a === `-${SHORT_FLAGS[flag]}`)),
  );
  // Not typed: a flag that must be given with another (--marian-dir with --translate marian) is
  // named by its listed flag; any other untyped field came from a default, and has no flag to name.
  return typed ?? listed[0];
}

/** The one line a FilipError prints: an option error in terms of the flag the user typed. */
export function errorLine(name: string, error: FilipError, argv: readonly string[], fieldFlags?: Readonly<Record<string, readonly string[]>>): string {
  // Option errors, and a resume's clash with its checkpoint, are about a flag; other codes' fields are columns.
  const aboutFlag = error.code === 'FILIP_ERR_INVALID_OPTION' || error.code === 'FILIP_ERR_CHECKPOINT';
  const flag = aboutFlag && error.field !== undefined ? flagOf(error.field, argv, fieldFlags) : undefined;
  if (flag === undefined) return `${name}: ${error.code}: ${error.message}`;
  const field = error.field!;
  // `keepCheckpoints` and a bare keepCheckpoints ("trained with vocabSize 1000") both become the flag;
  // a field spelled like its flag (batch) only where it is quoted, so words of the message stay.
  const detail =
    field !== flag
      ? error.detail.replace(new RegExp(`(?<![\\w-])${field.replace(/[.[\]]/g, '\\$&')}(?![\\w-])`, 'g'), `--${flag}`)
      : error.detail.replaceAll(`\`${field}\``, `\`--${flag}\``);
  const where = error.file !== undefined ? `${error.file}: ` : '';
  return `${name}: ${error.code}: ${where}--${flag}: ${detail}`;
}

/**
 * "Unknown arguments: foo-bar, fooBar" as "Unknown argument: foo-bar": yargs lists the camel-case key it
 * made from a flag the user typed beside the flag itself.
 */
export function withoutCamelTwins(message: string): string {
  const m = /^Unknown arguments?: (.*)$/.exec(message);
  if (m === null) return message;
  const names = m[1]!.split(', ');
  const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const kept = names.filter((n) => !(/[A-Z]/.test(n) && names.includes(kebab(n))));
  return `Unknown argument${kept.length === 1 ? '' : 's'}: ${kept.join(', ')}`;
}

/** A negative number yargs would read as short flags: `-1e-3` (flags 1, e, 3), `-Infinity`. */
const NEGATIVE_NUMBER = /^-(?:(?:\d+\.?\d*|\.\d+)e[+-]?\d+|Infinity)$/i;

/**
 * `--lr -1e-3` as `--lr=-1e-3`: yargs knows plain negative numbers (`-0.001`) but splits one with an
 * exponent, or -Infinity, into one-letter flags and stops with "Unknown arguments: 1, e" instead of
 * the flag's own range message.
 */
export function joinNegativeNumbers(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (a.startsWith('--') && a.length > 2 && !a.includes('=') && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * Parses `argv` for the program `name` with its `commands` and runs the chosen one. A usage error
 * prints the help and the message, exit 1; a FilipError from a command prints
 * `name: CODE: message`, exit 2 (an option error names the flag, see flagOf); anything else is
 * thrown on (a bug: its stack is wanted).
 */
export async function runProgram(
  name: string,
  typed: string[],
  commands: readonly CommandModule<object, never>[],
  demand: string,
  fieldFlags: Readonly<Record<string, readonly string[]>> = {},
): Promise<void> {
  const argv = joinNegativeNumbers(typed);
  try {
    let y = numbersMustParse(yargs(argv), argv)
      .scriptName(name)
      // Given, not guessed: yargs looks for package.json from its own install folder and, when that
      // folder's path has a dot in it (/tmp/tmp.x1y2/node_modules), mistakes it for a file and prints 'unknown'.
      .version(FILIP_VERSION);
    for (const c of commands) y = y.command(c as never);
    await y
      .demandCommand(1, demand)
      .strict()
      .help()
      .fail((message, error, parser) => {
        // A failed check arrives as its message string; a command's own error goes on to the catch below.
        if (error instanceof Error) throw error;
        process.stderr.write(`${parser.help()}\n\n${withoutCamelTwins(message)}\n`);
        process.exit(1);
      })
      .parseAsync();
  } catch (error) {
    if (error instanceof FilipError) {
      process.stderr.write(`${errorLine(name, error, argv, fieldFlags)}\n`);
      process.exit(2);
    }
    throw error;
  }
}

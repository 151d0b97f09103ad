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
 * Adds a global check: a number option that parsed to NaN fails, and so does a number or string
 * option given with no value (`--flag` last, or followed by another flag), naming the flag.
 * `raw` is the argument list yargs parses.
 */
export function numbersMustParse<T>(y: Argv<T>, raw: readonly string[]): Argv<T> {
  return y.check((argv) => {
    const options = (y as unknown as { getOptions(): { number: string[]; string: string[] } }).getOptions();
    for (const name of options.number) {
      const value = (argv as Record<string, unknown>)[name];
      const values = Array.isArray(value) ? value : [value];
      if (values.some((v) => typeof v === 'number' && Number.isNaN(v))) return `--${name} must be a number`;
    }
    for (const name of [...options.number, ...options.string]) {
      const at = raw.indexOf(`--${name}`);
      if (at < 0) continue;
      const next = raw[at + 1];
      if (next === undefined || (next.startsWith('-') && !/^-\d/.test(next))) return `--${name} needs a value`;
    }
    return true;
  }, true);
}

/**
 * Parses `argv` for the program `name` with its `commands` and runs the chosen one. A usage error
 * prints the help and the message, exit 1; a FilipError from a command prints
 * `name: CODE: message`, exit 2; anything else is thrown on (a bug: its stack is wanted).
 */
export async function runProgram(name: string, argv: string[], commands: readonly CommandModule<object, never>[], demand: string): Promise<void> {
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
        process.stderr.write(`${parser.help()}\n\n${message}\n`);
        process.exit(1);
      })
      .parseAsync();
  } catch (error) {
    if (error instanceof FilipError) {
      process.stderr.write(`${name}: ${error.code}: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

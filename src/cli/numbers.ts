// Two slips yargs lets through, stopped at the flag the user typed:
// - `--timeout abc` for a number option parses to NaN; the stage's validator would then name its own
//   field ("connectTimeoutMs") rather than the flag;
// - `--seed` or `--samples-per-shard` with no value (a script's `--seed $SEED` with SEED empty) parses
//   to nothing, and the run goes on with the default as if the flag were absent.

import type { Argv } from 'yargs';

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

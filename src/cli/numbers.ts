// yargs turns `--timeout abc` for a number option into NaN and passes it on; the stage's validator
// then names its own field ("connectTimeoutMs") rather than the flag the user typed. This check
// stops it at the flag.

import type { Argv } from 'yargs';

/** Adds a global check: every option declared `type: 'number'` that parsed to NaN fails, naming its flag. */
export function numbersMustParse<T>(y: Argv<T>): Argv<T> {
  return y.check((argv) => {
    const numbers = (y as unknown as { getOptions(): { number: string[] } }).getOptions().number;
    for (const name of numbers) {
      const value = (argv as Record<string, unknown>)[name];
      const values = Array.isArray(value) ? value : [value];
      if (values.some((v) => typeof v === 'number' && Number.isNaN(v))) return `--${name} must be a number`;
    }
    return true;
  }, true);
}

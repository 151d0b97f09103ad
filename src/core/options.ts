// Small validators shared by every stage's options factory. Messages follow one shape:
// Expected `name` to be <what>, got <value>.

import { FilipError } from './errors.js';

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return typeof value;
  }
}

export function invalid(name: string, expected: string, got: unknown): FilipError {
  return new FilipError('FILIP_ERR_INVALID_OPTION', `Expected \`${name}\` to be ${expected}, got ${show(got)}`, {
    field: name,
  });
}

export function intOption(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `from ${min} and up` : `from ${min} to ${max}`;
    throw invalid(name, `an integer ${range}`, value);
  }
  return value;
}

export function numberOption(name: string, value: unknown, min: number, max = Number.POSITIVE_INFINITY): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < min || value > max) {
    throw invalid(name, `a number from ${min}${max === Number.POSITIVE_INFINITY ? ' and up' : ` to ${max}`}`, value);
  }
  return value;
}

export function choiceOption<T extends string>(name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw invalid(name, `one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`, value);
  }
  return value as T;
}

export function boolOption(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalid(name, 'a boolean', value);
  return value;
}

export function stringOption(name: string, value: unknown, { allowEmpty = false } = {}): string {
  if (typeof value !== 'string' || (!allowEmpty && value.length === 0)) {
    throw invalid(name, allowEmpty ? 'a string' : 'a non-empty string', value);
  }
  return value;
}

/** Rejects keys that the defaults object does not know: a typo in an option is an error, not a no-op. */
export function rejectUnknownKeys(stage: string, given: object, known: object): void {
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(known, key)) {
      throw new FilipError('FILIP_ERR_INVALID_OPTION', `Unknown ${stage} option \`${key}\``, { field: key });
    }
  }
}

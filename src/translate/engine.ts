// What every translation engine offers, and the language codes they share. An engine translates a
// batch of texts from one language to another and answers per text: a string, or an Error for that
// text alone, so one bad caption never costs the others their translation. Only failures that make
// every later call fail too (engine missing, model files absent) are thrown, as FilipError.

/** Engines the back-translation stage can use; `none` turns the stage off. */
export const TRANSLATION_ENGINES = ['apertium', 'marian', 'http', 'none'] as const;
export type TranslationEngine = (typeof TRANSLATION_ENGINES)[number];

/** Dialects of the HTTP engine: LibreTranslate's JSON API, or apertium-apy's query API. */
export const HTTP_FLAVOURS = ['libretranslate', 'apertium-apy'] as const;
export type HttpFlavour = (typeof HTTP_FLAVOURS)[number];

/**
 * Languages known to the stage, ISO 639-3, with their ISO 639-1 code (LibreTranslate and the opus-mt
 * model names use the two-letter one). Captions are English; the others can be pivots.
 */
export const TRANSLATION_LANGUAGES = {
  eng: 'en',
  spa: 'es',
  cat: 'ca',
  deu: 'de',
  rus: 'ru',
} as const;
export type TranslationLanguage = keyof typeof TRANSLATION_LANGUAGES;
export const PIVOT_LANGUAGES = ['spa', 'cat', 'deu', 'rus'] as const;
export type PivotLanguage = (typeof PIVOT_LANGUAGES)[number];

/** The language of the captions: back-translation goes eng -> pivot -> eng. */
export const SOURCE_LANGUAGE = 'eng';

/**
 * Pivots used when the user names none. Apertium: Debian ships eng-spa and eng-cat (there is no
 * eng-deu or eng-rus pair). Marian: the FILIP paper's German and Russian.
 */
export const DEFAULT_PIVOTS: Readonly<Record<Exclude<TranslationEngine, 'none'>, readonly PivotLanguage[]>> = {
  apertium: ['spa', 'cat'],
  marian: ['deu', 'rus'],
  http: ['spa', 'cat'],
};

export interface Translator {
  /** Name recorded with each result (`sample.backTranslations[].engine`) and in cache keys. */
  readonly engine: string;
  /**
   * Translates each text; the answer has one entry per input, in order: the translation, or an Error
   * saying why that text failed. Rejects only on misuse (unknown language pair: FilipError).
   */
  translate(texts: readonly string[], from: string, to: string): Promise<(string | Error)[]>;
  /**
   * Optional: throws FilipError unless the engine can translate from -> to here (Apertium mode files,
   * Marian model files). The stage calls it for every pivot, both ways, before the first sample.
   */
  check?(from: string, to: string): Promise<void>;
  /** Stops child processes, sockets and sessions; later calls fail. */
  close(): Promise<void>;
}

/**
 * The form in which a caption is translated and cached: NUL and other control characters become
 * spaces, runs of whitespace (spaces, tabs, newlines, no-break spaces) become one space, and the ends
 * are trimmed. Case and punctuation are kept: they change the translation.
 */
export function normalizeForTranslation(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, ' ').replace(/\s+/gu, ' ').trim();
}

/** Two-letter code of a language the stage knows, or the input unchanged. */
export function iso6391(code: string): string {
  return Object.hasOwn(TRANSLATION_LANGUAGES, code) ? TRANSLATION_LANGUAGES[code as TranslationLanguage] : code;
}

/** An Error for one text, with a message that says which engine and direction failed. */
export function textError(engine: string, from: string, to: string, why: string): Error {
  return new Error(`${engine} ${from}->${to}: ${why}`);
}

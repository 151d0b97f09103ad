// Back-translation (caption -> pivot language -> English): engines, cache and the pipeline stage.
export {
  DEFAULT_PIVOTS,
  HTTP_FLAVOURS,
  PIVOT_LANGUAGES,
  SOURCE_LANGUAGE,
  TRANSLATION_ENGINES,
  TRANSLATION_LANGUAGES,
  iso6391,
  normalizeForTranslation,
  type HttpFlavour,
  type PivotLanguage,
  type TranslationEngine,
  type TranslationLanguage,
  type Translator,
} from './engine.js';
export { ApertiumTranslator, DEFAULT_APERTIUM_OPTIONS, deformat, reformat, resolveApertiumOptions, untag, type ApertiumOptions } from './apertium.js';
export { DEFAULT_HTTP_TRANSLATOR_OPTIONS, HttpTranslator, resolveHttpTranslatorOptions, type HttpTranslatorOptions } from './http.js';
export {
  DEFAULT_MARIAN_OPTIONS,
  MARIAN_DTYPES,
  MarianTranslator,
  checkMarianFiles,
  loadTransformers,
  marianModelName,
  marianRequiredFiles,
  resolveMarianOptions,
  type MarianDtype,
  type MarianOptions,
} from './marian.js';
export { TranslationCache } from './cache.js';
export {
  DEFAULT_BACK_TRANSLATE_OPTIONS,
  backTranslateStage,
  createBackTranslator,
  createTranslator,
  defaultPivots,
  resolveBackTranslateOptions,
  type BackTranslateOptions,
  type BackTranslationStats,
  type BackTranslator,
  type ResolvedBackTranslateOptions,
} from './backtranslate.js';
export { makeTestCaptions, type TestCaptionOptions } from './test-captions.js';
export { captionSamples, measureBackTranslation, type BackTranslationMeasure } from './measure.js';

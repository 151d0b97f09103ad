// The English-caption detector: a table of short real-looking captions, the franc engine, option
// validation. Needs no .cache eval set and no network (the word lists ship in npm packages).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import {
  LANGUAGE_ENGINES,
  createEnglishDetector,
  englishScore,
  languageScores,
} from '../src/filters/language.js';

const isEnglish = createEnglishDetector();

const ENGLISH = [
  'a dog running on the beach', // franc: Scots
  'beautiful bride in white dress', // franc: Romanian
  'red car',
  'sunset over the mountains',
  'two cats sleeping on a sofa',
  'Man riding a bicycle down a busy city street',
  'close-up of a red rose with water drops',
  'aerial view of the old town at night',
  'young woman drinking coffee in a cafe',
  'Vintage leather armchair',
  'Happy birthday cake with candles',
  'the Eiffel Tower in Paris',
  'stock photo of a businessman using a laptop',
  'children playing football in the park',
  'fresh vegetables at the farmers market',
  'black and white portrait of an old man',
  'snow covered pine trees',
  'A BOWL OF RAMEN NOODLES',
  'Kitchen interior with wooden cabinets',
  'glass of red wine on a wooden table',
  'Golden retriever puppy',
  'view from the top of the hill',
  'Coffee cup on a saucer',
  'mother holding her newborn baby',
  'the city skyline reflected in the river',
  'family having a picnic in the garden',
  'Cute kitten 🐱 playing with a ball of yarn!!',
  'Download this image at https://example.com/photos/123.jpg',
  '2 bedroom apartment for rent in Berlin',
  'Toyota Corolla 2019 - front view',
  'iPhone 12 case with floral pattern',
  '@janedoe wearing a blue summer dress #fashion',
] as const;

const NOT_ENGLISH = [
  // German
  'ein Hund läuft am Strand',
  'Braut im weißen Kleid',
  'Sonnenuntergang über den Bergen',
  'zwei Katzen schlafen auf dem Sofa',
  'frisches Gemüse auf dem Wochenmarkt',
  'Blick auf die Altstadt bei Nacht',
  // French
  'un chien qui court sur la plage',
  'belle mariée en robe blanche',
  'coucher de soleil sur la mer',
  'vue aérienne de la vieille ville',
  'une tasse de café sur la table',
  // Spanish
  'un perro corriendo en la playa',
  'novia hermosa con vestido blanco',
  'niños jugando al fútbol en el parque',
  'vista de la ciudad desde el mirador',
  // Italian
  'un cane che corre sulla spiaggia',
  'tramonto sul mare',
  'una tazza di caffè sul tavolo di legno',
  'bambini che giocano nel parco',
  // Dutch
  'een hond die op het strand rent',
  'zonsondergang boven de bergen',
  'oude molen aan de rivier',
  // Portuguese
  'um cachorro correndo na praia',
  'vista aérea da cidade à noite',
  'noiva bonita com vestido branco',
  // Swedish, Polish, Danish
  'en hund som springer på stranden',
  'pies biegnący po plaży',
  'solnedgang over havet',
  // Russian, Chinese, Japanese, Arabic, Greek, Korean
  'собака бежит по пляжу',
  'Красивая невеста в белом платье',
  '一只狗在海滩上奔跑',
  '穿白色婚纱的美丽新娘',
  '海辺を走る犬',
  'كلب يركض على الشاطئ',
  'σκύλος που τρέχει στην παραλία',
  '해변을 달리는 개',
  // mixed: a few Latin letters do not make a Chinese or Russian caption English
  'iPhone 手机壳 保护套',
  'Москва, Red Square',
] as const;

test('the caption table: English captions are English, the others are not', () => {
  assert.ok(ENGLISH.length + NOT_ENGLISH.length >= 60);
  const wrong: string[] = [];
  for (const text of ENGLISH) if (!isEnglish(text)) wrong.push(`should be English: ${text} (${englishScore(text).toFixed(2)})`);
  for (const text of NOT_ENGLISH) if (isEnglish(text)) wrong.push(`should not be English: ${text} (${englishScore(text).toFixed(2)})`);
  assert.deepEqual(wrong, []);
});

test('case, punctuation, digits, emoji and URLs do not change the answer', () => {
  const base = 'a dog running on the beach';
  for (const variant of [
    'A DOG RUNNING ON THE BEACH',
    'A Dog Running On The Beach',
    '"a dog, running on the beach..."',
    'a dog running on the beach 🐕🌊',
    'a dog running on the beach (2023)',
    'a dog running on the beach http://img.example.org/dog.jpg',
    'a dog running on the beach www.example.com',
  ]) {
    assert.equal(isEnglish(variant), true, variant);
  }
  assert.ok(englishScore(base) > 0);
  assert.equal(isEnglish('ein Hund läuft am Strand https://example.com/hund.jpg'), false);
});

test('texts with no Latin word are not English', () => {
  for (const text of ['', '   ', '12345', '🐶🐱🐭', '!!! ???', 'https://example.com/a.jpg', '2019-05-04 12:30']) {
    assert.equal(isEnglish(text), false, JSON.stringify(text));
    assert.equal(englishScore(text), Number.NEGATIVE_INFINITY);
  }
});

test('one word: English when the English list has it and no language clearly beats English', () => {
  assert.equal(isEnglish('dog'), true); // Swedish "dog" (died) is commoner, but not by much
  assert.equal(isEnglish('Sunset'), true);
  assert.equal(isEnglish('beautiful!'), true);
  assert.equal(isEnglish('Hund'), false);
  assert.equal(isEnglish('Sonnenuntergang'), false);
  assert.equal(isEnglish('playa'), false);
  assert.equal(isEnglish('xqzvbt'), false); // no list has it
});

test('non-Latin scripts are not English whatever else the text holds', () => {
  assert.deepEqual(languageScores('собака бежит по пляжу'), []);
  assert.equal(englishScore('狗 dog'), Number.NEGATIVE_INFINITY);
  // One foreign letter in an English caption does not flip it.
  assert.equal(isEnglish('the Greek letter π on a blackboard'), true);
});

test('languageScores names the likeliest language, English included', () => {
  assert.equal(languageScores('un chien qui court sur la plage')[0]!.lang, 'fr');
  assert.equal(languageScores('ein Hund läuft am Strand')[0]!.lang, 'de');
  assert.equal(languageScores('a dog running on the beach')[0]!.lang, 'en');
  const scores = languageScores('novia hermosa con vestido blanco');
  assert.equal(scores[0]!.lang, 'es');
  assert.ok(scores.length === 29 && scores.every((s) => Number.isFinite(s.logLikelihood)));
});

test('a detector is pure: same answer every time, detectors agree', () => {
  const other = createEnglishDetector('filip');
  for (const text of [...ENGLISH.slice(0, 5), ...NOT_ENGLISH.slice(0, 5)]) {
    const first = isEnglish(text);
    assert.equal(isEnglish(text), first);
    assert.equal(other(text), first);
  }
});

test('engine franc stays available, and is franc', () => {
  assert.deepEqual(Object.keys(LANGUAGE_ENGINES).sort(), ['filip', 'franc']);
  const francEnglish = createEnglishDetector('franc');
  assert.equal(francEnglish('She said that they would be arriving at the station later in the evening.'), true);
  assert.equal(francEnglish('Sie sagte, dass sie am späten Abend am Bahnhof ankommen würden.'), false);
  assert.equal(francEnglish('a dog running on the beach'), false); // franc: Scots
  assert.equal(francEnglish('beautiful bride in white dress'), false); // franc: Romanian
  assert.equal(francEnglish('red car'), false); // under franc's 10-character minimum
});

test('an unknown engine is FILIP_ERR_INVALID_OPTION', () => {
  for (const engine of ['cld3', 'FILIP', '', 42, null]) {
    assert.throws(
      () => createEnglishDetector(engine as never),
      (err: unknown) => err instanceof FilipError && err.code === 'FILIP_ERR_INVALID_OPTION' && err.field === 'engine',
      String(engine),
    );
  }
});

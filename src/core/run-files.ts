// The files every filip-data output folder holds beside its shards, named here so that readers outside
// the pipeline (the trainer's loader) can tell a finished run from one that stopped or is still going.

/** The run's identity, written when the run starts; a folder without it is not a filip-data output. */
export const RUN_FILE = '_run.json';
/** The run's summary, written last; removed when a run starts again in the folder. */
export const SUMMARY_FILE = '_summary.json';

// The trainer's data loader: seeded, resumable, worker-split streams of training samples over a folder
// of training shards (see stream.ts for the order and resume design, shards.ts for the folder and reads).

export {
  openShardStream,
  planEpoch,
  resolveShardStreamOptions,
  streamSamples,
  type EpochPlan,
  type PlanUnit,
  type ShardStream,
  type ShardStreamInput,
  type ShardStreamOptions,
  type StreamPosition,
} from './stream.js';
export {
  SHARD_FILE_FORMATS,
  SIZES_FILE,
  STREAM_FIELDS,
  STREAM_FIELD_NAMES,
  listShards,
  shardFolderNames,
  unfinishedRun,
  type ListShardsOptions,
  type ReadCounters,
  type ShardFileFormat,
  type ShardInfo,
  type StreamField,
  type TrainingSample,
} from './shards.js';

import VTPVocabulary
/// File names of sharded outputs.
public enum ShardNaming {
    /// LightningDiT's `f'latents_rank{rank:02d}_shard{shard:03d}.safetensors'`
    /// (`extract_features.py`); other tensor kinds use their own prefix in the same pattern.
    public static func tensorShard(prefix: String = "latents", rank: Int, shard: Int) -> String {
        "\(prefix)_rank\(pad(rank, 2))_shard\(pad(shard, 3)).safetensors"
    }

    /// The source-id sidecar beside a tensor shard: `ids_rank00_shard000.jsonl`. It deliberately
    /// does not end in `.safetensors`, because `ImgLatentDataset` globs every `*.safetensors` file.
    public static func idSidecar(rank: Int, shard: Int) -> String {
        "ids_rank\(pad(rank, 2))_shard\(pad(shard, 3)).jsonl"
    }

    /// Zero-padding width that makes lexicographic order equal shard order for `shardCount`
    /// shards: the number of decimal digits in `shardCount`, as clip-retrieval's
    /// `str(i).zfill(int(log10(count)) + 1)` gives.
    public static func width(forShardCount shardCount: Int) -> Int {
        String(max(shardCount, 1)).count
    }

    /// `index` zero-padded to `width` digits (wider numbers are not truncated).
    public static func pad(_ index: Int, _ width: Int) -> String {
        let s = String(index)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

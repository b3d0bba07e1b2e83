

def test_features_task_sentiment_stores_the_sentiment_as_target(mosei_shards, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main
    from mer_data.features.table import read_split

    feats = tmp_path / "feats"
    result = CliRunner().invoke(main, ["features", "extract", str(mosei_shards), str(feats), "--task", "sentiment",
                                       "--audio", "mfcc", "--visual", "none", "--text", "none", "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((feats / "features.json").read_text())["label_names"] == ["sentiment"]
    index = pd.read_parquet(mosei_shards / "index.parquet").set_index("key")["sentiment"]
    rows = read_split(feats, "train", columns=["key", "target"]).to_pylist()
    assert rows and all(row["target"] == [pytest.approx(index[row["key"]])] for row in rows)

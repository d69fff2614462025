def test_tiny_models_build(tiny_llm_path, tiny_bert_path):
    assert (tiny_llm_path / "model.safetensors").exists()
    assert (tiny_bert_path / "modules.json").exists()

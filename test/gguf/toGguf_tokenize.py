"""Reference tokenizations for the GGUF converter tests.

usage: toGguf_tokenize.py hf TOKENIZER_JSON TEXTS_JSON  -> ids per text (tokenizers, no added BOS/EOS)
       toGguf_tokenize.py sp TOKENIZER_MODEL TEXTS_JSON -> ids per text (sentencepiece)
       toGguf_tokenize.py train-sp OUT_PREFIX CORPUS    -> trains a small BPE SentencePiece model
"""
import json
import sys

mode, path = sys.argv[1], sys.argv[2]
if mode == 'train-sp-nfkc':
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(input=sys.argv[3], model_prefix=path, vocab_size=400, model_type='bpe', minloglevel=2)
    sys.exit(0)
if mode == 'train-sp':
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(input=sys.argv[3], model_prefix=path, vocab_size=400, model_type='bpe',
                                   byte_fallback=True, character_coverage=1.0, user_defined_symbols=['<tool>'],
                                   normalization_rule_name='identity', remove_extra_whitespaces=False,
                                   minloglevel=2)
    sys.exit(0)
texts = json.load(open(sys.argv[3], encoding='utf-8'))
if mode == 'hf':
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    print(json.dumps([tok.encode(t, add_special_tokens=False).ids for t in texts]))
else:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=path)
    print(json.dumps([sp.encode(t) for t in texts]))

"""The noun closure as facebookresearch/poincare-embeddings' wordnet/transitive_closure.py builds
it (its edge loop verbatim, with nltk), on the Debian wordnet-base files: the reference for
`tests/test_hyperbolic_data.py` (743,086 edges over 82,115 nodes, nltk 3.10.4, wordnet-base
1:3.0-37).

    python -m venv /tmp/nltkenv && /tmp/nltkenv/bin/pip install nltk
    mkdir -p /tmp/nltk_data/corpora/wordnet && cp /usr/share/wordnet/*.* /tmp/nltk_data/corpora/wordnet/
    # plus a `lexnames` file there (WordNet's 45 lexicographer file names; nltk only reads it
    # for lexname(), which the closure does not use)
    /tmp/nltkenv/bin/python tests/data/make_nltk_noun_closure.py /tmp/nltk_data OUT.tsv

nltk's reader refuses symlinked files (copy them), and its map to WordNet 3.0 for the
multilingual data needs `index.sense`, which wordnet-base lacks, so it is switched off.
"""
import sys
import nltk
nltk.data.path.insert(0, sys.argv[1])
from nltk.corpus.reader.wordnet import WordNetCorpusReader
WordNetCorpusReader.map_wn = lambda self, version="wordnet": None  # OMW mapping only; needs index.sense
from nltk.corpus import wordnet as wn
print("wordnet version", wn.get_version())
edges = set()
for synset in wn.all_synsets(pos='n'):
    for hyper in synset.closure(lambda s: s.hypernyms()):
        edges.add((synset.name(), hyper.name()))
    for instance in synset.instance_hyponyms():
        for hyper in instance.closure(lambda s: s.instance_hypernyms()):
            edges.add((instance.name(), hyper.name()))
            for h in hyper.closure(lambda s: s.hypernyms()):
                edges.add((instance.name(), h.name()))
nodes = {n for e in edges for n in e}
print(len(edges), len(nodes))
with open(sys.argv[2], 'w') as f:
    for a, b in sorted(edges):
        f.write(f"{a}\t{b}\n")

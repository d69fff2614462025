"""Cranfield, CISI, CACM or NPL in BEIR layout: collections outside ../shared, to check adaptation does no harm there.

Every default was chosen on SciFact and ADI. Four classic test collections the project never tuned on make the
check that the issue asks for on "collections you do not have":
- Cranfield 1400 (Cleverdon, 1960s): 1,400 aeronautics abstracts, 225 questions written by the papers' authors;
- CISI (Institute for Scientific Information): 1,460 abstracts on information science, ADI's field at 18 times
  its size, 76 of its 112 queries judged;
- CACM (Communications of the ACM, 1958-1979): 3,204 computer-science records, half of them titles alone, 52 of
  its 64 queries judged;
- NPL (Vaswani and Cameron, 1970): 11,429 electrical-engineering abstracts of about 40 words, lower-cased and
  without digits or punctuation, 93 queries, all judged.
Their files (SMART format: `cran.all.1400`, `cran.qry`, `cranqrel`; `CISI.ALL`, `CISI.QRY`, `CISI.REL`; `cacm.all`,
`query.text`, `qrels.text`; NPL's own, records ended by a `/` line: `doc-text`, `query-text`, `rlv-ass`) are copied
in many public course repositories; give their folder:

    .venv/bin/python bench/classic_to_beir.py cranfield SRC_FOLDER /tmp/cranfield
    .venv/bin/python bench/bench_pipeline.py --data /tmp/cranfield --work W --name cranfield-default

Cranfield's quirks: `cranqrel` numbers the queries 1-225 by position, not by their `.I` labels (which skip
numbers), and its relevance codes, Cleverdon's scale as `cranqrel.readme` gives it, run the wrong way for nDCG
(1 = a complete answer ... 4 = minimum interest; -1 = of no interest), so a code c becomes grade 5 - c and -1 is
left out. (ir_datasets keys the queries by their `.I` labels and keeps the codes as grades; not followed here.)
CISI's and CACM's judgments are binary; their documents' `.X` cross-references and CACM's `.A` (authors), `.B`
(issue) and `.N` fields are not text and are left out, so CACM's query 2, which asks only for two authors, has no
text to match.
CACM's qrels write ids with leading zeros (`05 0756`), its files do not. NPL's judgments are binary; the copy read here
lacks documents 6984, 8139 and 8143, none of them judged (a judgment of a document not in the file would be left
out, and the script prints how many were).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

FILES = {"cranfield": ("cran.all.1400", "cran.qry", "cranqrel"), "cisi": ("CISI.ALL", "CISI.QRY", "CISI.REL"),
         "cacm": ("cacm.all", "query.text", "qrels.text"), "npl": ("doc-text", "query-text", "rlv-ass")}


def fields(path: Path) -> list[dict[str, str]]:
    """Split a SMART-format file into records of their `.T` (title) and `.W` (text) fields, keyed by `.I`."""
    records: list[dict[str, str]] = []
    field = None
    for line in path.read_text(encoding="latin-1").splitlines():
        tag = re.match(r"^\.([A-Z])\b\s*(.*)$", line)
        if tag:
            field = tag.group(1) if tag.group(1) in "TW" else None
            if tag.group(1) == "I":
                records.append({"I": tag.group(2).strip()})
            elif field:
                records[-1][field] = ""
            continue
        if field:
            records[-1][field] += " " + line.strip()
    return [{k: " ".join(v.split()) for k, v in r.items()} for r in records]


def slashed(path: Path) -> list[list[str]]:
    """NPL's records: an id line, then text lines (or, in `rlv-ass`, lines of document ids), then a `/` line."""
    records, lines = [], []
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.strip() == "/":
            records.append(lines)
            lines = []
        elif line.strip():
            lines.append(line.strip())
    return records


def npl(src: Path) -> tuple[list[dict[str, str]], list[dict[str, str]], list[tuple[str, str, int]]]:
    docs = [{"I": r[0], "W": " ".join(" ".join(r[1:]).split())} for r in slashed(src / "doc-text")]
    queries = [{"I": r[0], "W": " ".join(r[1:])} for r in slashed(src / "query-text")]
    rows = [(r[0], d, 1) for r in slashed(src / "rlv-ass") for d in " ".join(r[1:]).split()]
    return docs, queries, rows


def qrels_rows(collection: str, path: Path, query_ids: list[str]) -> list[tuple[str, str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < (2 if collection == "cacm" else 3):  # CACM's last line lacks its two zeros
            continue
        if collection == "cisi":
            rows.append((parts[0], parts[1], 1))
        elif collection == "cacm":
            rows.append((str(int(parts[0])), str(int(parts[1])), 1))
        elif int(parts[2]) in (1, 2, 3, 4) and int(parts[0]) <= len(query_ids):
            rows.append((query_ids[int(parts[0]) - 1], parts[1], 5 - int(parts[2])))
    return rows


def smart(collection: str, src: Path) -> tuple[list[dict[str, str]], list[dict[str, str]], list[tuple[str, str, int]]]:
    docs_file, queries_file, qrels_file = (src / name for name in FILES[collection])
    docs = fields(docs_file)
    for doc in docs:
        if doc.get("T") and doc.get("W", "").startswith(doc["T"]):  # Cranfield's .W repeats the title in front
            doc["W"] = doc["W"][len(doc["T"]):].strip()
    queries = fields(queries_file)
    if collection == "cranfield":  # its qrels count queries by position; the others' use the .I labels
        queries = [{**q, "I": str(n)} for n, q in enumerate(queries, 1)]
    return docs, queries, qrels_rows(collection, qrels_file, [q["I"] for q in queries])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection", choices=sorted(FILES))
    parser.add_argument("src", type=Path, help="the folder with the collection's three files")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    docs, queries, rows = npl(args.src) if args.collection == "npl" else smart(args.collection, args.src)
    known = {doc["I"] for doc in docs}
    missing = [row for row in rows if row[1] not in known]
    rows = [row for row in rows if row[1] in known]
    (args.out / "qrels").mkdir(parents=True, exist_ok=True)
    with (args.out / "corpus.jsonl").open("w") as f:
        f.writelines(json.dumps({"_id": d["I"], "title": d.get("T", ""), "text": d.get("W", "")}) + "\n" for d in docs)
    with (args.out / "queries.jsonl").open("w") as f:
        f.writelines(json.dumps({"_id": q["I"], "text": q["W"]}) + "\n" for q in queries)
    with (args.out / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{g}\n" for q, d, g in rows)
    print(f"{args.out}: {len(docs)} documents, {len(queries)} queries, {len({q for q, _, _ in rows})} judged, "
          f"{len(rows)} qrels rows ({len(missing)} left out: their document is not in the file)")


if __name__ == "__main__":
    main()

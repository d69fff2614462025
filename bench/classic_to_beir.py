"""Cranfield, CISI or CACM in BEIR layout: collections outside ../shared, to check that adaptation does no harm there.

Every default was chosen on SciFact and ADI. Three classic test collections the project never tuned on make the
check that the issue asks for on "collections you do not have":
- Cranfield 1400 (Cleverdon, 1960s): 1,400 aeronautics abstracts, 225 questions written by the papers' authors;
- CISI (Institute for Scientific Information): 1,460 abstracts on information science, ADI's field at 18 times
  its size, 76 of its 112 queries judged;
- CACM (Communications of the ACM, 1958-1979): 3,204 computer-science records, half of them titles alone, 52 of
  its 64 queries judged.
Their SMART-format files (`cran.all.1400`, `cran.qry`, `cranqrel`; `CISI.ALL`, `CISI.QRY`, `CISI.REL`; `cacm.all`,
`query.text`, `qrels.text`) are copied in
many public course repositories; give their folder:

    .venv/bin/python bench/classic_to_beir.py cranfield SRC_FOLDER /tmp/cranfield
    .venv/bin/python bench/bench_pipeline.py --data /tmp/cranfield --work W --name cranfield-default

Cranfield's quirks: `cranqrel` numbers the queries 1-225 by position, not by their `.I` labels (which skip
numbers), and its relevance codes, Cleverdon's scale as `cranqrel.readme` gives it, run the wrong way for nDCG
(1 = a complete answer ... 4 = minimum interest; -1 = of no interest), so a code c becomes grade 5 - c and -1 is
left out. (ir_datasets keys the queries by their `.I` labels and keeps the codes as grades; not followed here.)
CISI's and CACM's judgments are binary; their documents' `.X` cross-references and CACM's `.A` (authors), `.B`
(issue) and `.N` fields are not text and are left out, so CACM's query 2, which asks only for two authors, has no
text to match.
CACM's qrels write ids with leading zeros (`05 0756`), its files do not.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

FILES = {"cranfield": ("cran.all.1400", "cran.qry", "cranqrel"), "cisi": ("CISI.ALL", "CISI.QRY", "CISI.REL"),
         "cacm": ("cacm.all", "query.text", "qrels.text")}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection", choices=sorted(FILES))
    parser.add_argument("src", type=Path, help="the folder with the collection's three SMART-format files")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    docs_file, queries_file, qrels_file = (args.src / name for name in FILES[args.collection])
    (args.out / "qrels").mkdir(parents=True, exist_ok=True)

    with (args.out / "corpus.jsonl").open("w") as f:
        for doc in fields(docs_file):
            title, text = doc.get("T", ""), doc.get("W", "")
            if title and text.startswith(title):  # Cranfield's .W repeats the title in front of the abstract
                text = text[len(title):].strip()
            f.write(json.dumps({"_id": doc["I"], "title": title, "text": text}) + "\n")

    queries = fields(queries_file)
    # Cranfield's qrels count queries by position; CISI's and CACM's use the .I labels
    query_ids = [str(n) for n in range(1, len(queries) + 1)] if args.collection == "cranfield" else [q["I"] for q in queries]
    with (args.out / "queries.jsonl").open("w") as f:
        for query_id, query in zip(query_ids, queries):
            f.write(json.dumps({"_id": query_id, "text": query["W"]}) + "\n")

    rows = qrels_rows(args.collection, qrels_file, query_ids)
    with (args.out / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{g}\n" for q, d, g in rows)
    print(f"{args.out}: {len(queries)} queries, {len({q for q, _, _ in rows})} judged, {len(rows)} qrels rows")


if __name__ == "__main__":
    main()

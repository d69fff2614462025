"""A small corpus with known answers for the retrieval and relabel tests: one passage per topic, and a query per
topic that shares words and meaning with its passage only."""

from synthgen.records import Passage, Query

TOPICS = [
    ("volcano", "Volcanic eruptions", "Magma rises through the crust and erupts as lava, ash and volcanic gases; "
     "pyroclastic flows can bury towns near the volcano."),
    ("bees", "Honey bees", "Worker bees collect nectar and pollen from flowers, pollinating crops, and store honey in "
     "wax combs inside the hive."),
    ("insulin", "Insulin and diabetes", "The pancreas releases insulin to lower blood glucose; in type 1 diabetes "
     "the insulin-producing beta cells are destroyed."),
    ("chess", "Chess openings", "The Sicilian Defence answers the king's pawn opening with c5 and leads to sharp, "
     "unbalanced positions on the chessboard."),
    ("bread", "Baking bread", "Yeast ferments the sugars in wheat dough, producing carbon dioxide that makes the loaf "
     "rise before baking in a hot oven."),
    ("tides", "Ocean tides", "The gravitational pull of the moon and the sun raises the sea twice a day, giving high "
     "tide and low tide along the coast."),
    ("jazz", "Jazz history", "Jazz grew in New Orleans from blues and ragtime; trumpet players such as Louis Armstrong "
     "made improvised solos central to the music."),
    ("glacier", "Glaciers", "Glaciers form where snow compacts into ice over centuries; moving ice carves U-shaped "
     "valleys and leaves moraines behind."),
    ("vaccine", "Vaccines", "A vaccine trains the immune system with a harmless antigen so that antibodies and memory "
     "cells fight the real virus later."),
    ("rust", "Corrosion of iron", "Iron rusts when oxygen and water react with the metal, forming iron oxide that "
     "flakes away and weakens steel bridges."),
    ("sleep", "Sleep cycles", "During a night of sleep the brain cycles through light sleep, deep slow-wave sleep and "
     "REM sleep, when most dreaming happens."),
    ("comet", "Comets", "A comet is a ball of ice and dust; near the sun its ice turns to gas, forming a glowing coma "
     "and a long tail pointing away from the sun."),
]
QUESTIONS = {
    "volcano": "what happens when magma erupts from a volcano",
    "bees": "how do bees make honey from nectar",
    "insulin": "which cells produce insulin in diabetes",
    "chess": "sicilian defence chess opening",
    "bread": "why does yeast make bread dough rise",
    "tides": "what causes high and low tide",
    "jazz": "origins of jazz music in new orleans",
    "glacier": "how glaciers carve valleys",
    "vaccine": "how a vaccine trains the immune system",
    "rust": "why does iron rust in water",
    "sleep": "stages of sleep and rem dreaming",
    "comet": "why does a comet have a tail",
}


def passages() -> list[Passage]:
    return [Passage(id=f"{key}.txt#0", text=text, title=title, source=f"{key}.txt") for key, title, text in TOPICS]


def queries() -> list[Query]:
    return [Query(id=f"{key}.txt#0@0", passage_id=f"{key}.txt#0", task="find the passage that answers the question",
                  query=QUESTIONS[key], form="question") for key, _, _ in TOPICS]

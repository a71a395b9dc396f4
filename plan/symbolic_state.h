// The walker's symbolic machine state: values in registers and in
// [base+disp] slots, enough to follow an itab through registers and memory
// and to recognise the data word at the other end. Internal to plan/.
#ifndef GOERRPROF_PLAN_SYMBOLIC_STATE_H_
#define GOERRPROF_PLAN_SYMBOLIC_STATE_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "plan/function_code.h"

namespace goerrprof::profiler::planner {

constexpr uint32_t kAnyGen = ~0u;

struct Value {
  enum Kind : uint8_t {
    kOpaque,      // anything not modelled
    kRoot,        // a register's value at the start of the walk, or a merge
    kAddr,        // root + off: LEA results, RSP arithmetic, globals (root 0)
    kConst,       // an integer constant (aux)
    kCallResult,  // RAX after a call (aux: the call's address)
    kLoad,        // a load from memory not written during the walk
    kGarbage,     // left in a register by a call (not RAX), or a merge of such
                  // with values held before the walk: nothing wrote it
  };
  Kind kind = kOpaque;
  uint32_t root = 0;
  int64_t off = 0;
  uint64_t aux = 0;
  uint32_t gen = 0;  // kLoad: memory generation of its root class at the load
};

struct Slot {
  uint32_t root = 0;
  int64_t off = 0;
  uint32_t vid = 0;
  int written = -1;     // step of the last write; -1: only loaded
  bool plain = false;   // written from a register that is not a constant
};

struct State {
  std::array<uint32_t, kNumRegs> regs{};
  std::vector<Slot> slots;
  uint32_t stack_gen = 0;
  uint32_t heap_gen = 0;

  Slot* FindSlot(uint32_t root, int64_t off) {
    for (Slot& s : slots) {
      if (s.root == root && s.off == off) return &s;
    }
    return nullptr;
  }
  const Slot* FindSlot(uint32_t root, int64_t off) const {
    return const_cast<State*>(this)->FindSlot(root, off);
  }
  // Forgets slots that an access of `size` bytes at root+off overlaps.
  void Kill(uint32_t root, int64_t off, int size) {
    slots.erase(std::remove_if(slots.begin(), slots.end(),
                               [&](const Slot& s) {
                                 return s.root == root && s.off < off + size && off < s.off + 8;
                               }),
                slots.end());
  }
  void KillRoot(uint32_t root) {
    slots.erase(std::remove_if(slots.begin(), slots.end(),
                               [&](const Slot& s) { return s.root == root; }),
                slots.end());
  }
};

constexpr uint32_t kGlobalRoot = 0;  // vid 0: addresses are offsets from it

class Values {
 public:
  Values() { values_.push_back({Value::kRoot, 0, 0, 0, 0}); }
  const Value& operator[](uint32_t vid) const { return values_[vid]; }

  uint32_t Fresh(Value::Kind kind = Value::kOpaque, uint64_t aux = 0) {
    uint32_t vid = static_cast<uint32_t>(values_.size());
    values_.push_back({kind, vid, 0, aux, 0});
    return vid;
  }
  uint32_t Load(uint32_t root, int64_t off, uint32_t gen) {
    uint32_t vid = Fresh(Value::kLoad);
    values_[vid].aux = static_cast<uint64_t>(off);
    values_[vid].gen = gen;
    load_root_[vid] = root;
    return vid;
  }
  uint32_t LoadRoot(uint32_t vid) const { return load_root_.at(vid); }
  // root+off, interned so equal addresses are equal values.
  uint32_t Addr(uint32_t base, int64_t disp) {
    const Value& b = values_[base];
    uint32_t root = b.kind == Value::kAddr ? b.root : base;
    int64_t off = (b.kind == Value::kAddr ? b.off : 0) + disp;
    if (off == 0 && root != kGlobalRoot) return root;
    auto [it, fresh] = addrs_.try_emplace({root, off}, 0);
    if (fresh) {
      it->second = static_cast<uint32_t>(values_.size());
      values_.push_back({Value::kAddr, root, off, 0, 0});
    }
    return it->second;
  }
  uint32_t Global(uint64_t addr) { return Addr(kGlobalRoot, static_cast<int64_t>(addr)); }
  // base + index*scale (a slice element), interned as a root of its own:
  // the same two values name the same address.
  uint32_t Indexed(uint32_t base, uint32_t index, int scale) {
    if (scale == 1 && index < base) std::swap(base, index);
    auto [it, fresh] = indexed_.try_emplace(std::make_tuple(base, index, scale), 0);
    if (fresh) it->second = Fresh();
    return it->second;
  }
  uint32_t Const(uint64_t c) {
    auto [it, fresh] = consts_.try_emplace(c, 0);
    if (fresh) it->second = Fresh(Value::kConst, c);
    return it->second;
  }
  // (root, offset) a value addresses, for memory keys.
  std::pair<uint32_t, int64_t> Key(uint32_t vid) const {
    const Value& v = values_[vid];
    if (v.kind == Value::kAddr) return {v.root, v.off};
    return {vid, 0};
  }

 private:
  std::vector<Value> values_;
  absl::flat_hash_map<std::pair<uint32_t, int64_t>, uint32_t> addrs_;
  absl::flat_hash_map<uint64_t, uint32_t> consts_;
  absl::flat_hash_map<uint32_t, uint32_t> load_root_;
  absl::flat_hash_map<std::tuple<uint32_t, uint32_t, int>, uint32_t> indexed_;
};

}  // namespace goerrprof::profiler::planner

#endif  // GOERRPROF_PLAN_SYMBOLIC_STATE_H_

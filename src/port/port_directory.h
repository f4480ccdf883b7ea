// PortDirectory: the ports of one runtime as the parts below the runtime see them.
//
// The runtime implements it: its port map, its id generator and port slab, its shutdown rule,
// and telling the event handler when a port with fd registrations closes. A part that posts by
// id, opens or closes ports — the event handler, an isolate, a Receiver — is handed a
// PortDirectory and knows nothing of the runtime behind it (lower parts never call up).
//
// Threads: every method may be called from any thread; none blocks.
#pragma once

#include <evh/error.h>
#include <evh/message.h>

#include <span>

namespace evh::detail {

class PortState;
class PortTarget;

class PortDirectory {
 public:
  // Runtime::post's contract: `Errc::unknown_port` (also for a port closed since),
  // `Errc::shutting_down` once the runtime shuts down; on error the message is released here.
  virtual Status post(PortId port, Message&& message,
                      Priority priority = Priority::normal) noexcept = 0;
  // Posts every message of `messages` to `port` in order, in one enqueue: Runtime::post_batch's
  // contract (the same errors as post(); on error the messages not queued are released here).
  virtual Status post_batch(PortId port, std::span<Message> messages,
                            Priority priority = Priority::normal) noexcept = 0;
  // A new reference to the open port `port`, or null.
  virtual PortState* acquire(PortId port) noexcept = 0;
  // Opens a new port delivering into `target` (retained by the port); the caller owns the one
  // reference returned, the directory keeps its own until close(). May throw (allocation).
  virtual PortState* open(PortTarget& target) = 0;
  // Closes `port`: it leaves the directory (later posts fail), and if it had fd registrations
  // they and its timeout end. Closing an unknown or already closed port does nothing.
  virtual void close(PortId port) noexcept = 0;
  // `port` is about to get fd registrations; whoever closes it from now on tells the event
  // handler (see PortState::note_io). `Errc::unknown_port` when it is not open.
  virtual Status note_io(PortId port) noexcept = 0;
  // A fresh id from the same unguessable sequence (pause capabilities use them).
  virtual PortId next_id() noexcept = 0;

 protected:
  ~PortDirectory() = default;
};

}  // namespace evh::detail

//! A `virtio-drivers` transport whose device is a model over the pool's memory.

use super::chain::{Chain, DeviceError};
use super::region::DmaRegion;
use std::any::Any;
use std::boxed::Box;
use std::collections::VecDeque;
use std::string::ToString;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::vec::Vec;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// `VIRTIO_F_INDIRECT_DESC`.
pub const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_F_EVENT_IDX`.
pub const F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1`.
pub const F_VERSION_1: u64 = 1 << 32;

/// What a device model did with a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done: put it in the used ring with this many bytes written.
    Used(u32),
    /// Not now (a receive buffer with nothing to receive yet): offer it again at the next
    /// processing.
    Later,
}

/// The device side of a virtio device: what it offers and how it serves one chain. Models
/// reach buffers only through the [`Chain`] helpers, that is through vm-memory over the
/// pool.
pub trait DeviceModel: Any + Send {
    /// The virtio device type.
    fn device_type(&self) -> DeviceType;
    /// Device-specific feature bits (the transport adds the ring features).
    fn features(&self) -> u64;
    /// Number of virtqueues.
    fn queues(&self) -> u16;
    /// Largest queue size of each queue.
    fn max_queue_size(&self) -> u16 {
        256
    }
    /// The configuration space.
    fn config(&self) -> Vec<u8>;
    /// A driver write to the configuration space (ignored by default).
    fn write_config(&mut self, offset: usize, bytes: &[u8]) {
        let _ = (offset, bytes);
    }
    /// Serves one chain of queue `chain.queue`.
    ///
    /// # Errors
    ///
    /// A [`DeviceError`] for a request the device cannot serve; the transport records it
    /// and fails the device.
    fn handle(&mut self, chain: &Chain, mem: &GuestMemoryMmap) -> Result<Handled, DeviceError>;
}

/// When the device processes its queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inside `notify`, on the driver's thread. A device error panics there, so the test
    /// sees it at once. Blocking driver calls (`add_notify_wait_pop`) work.
    Inline,
    /// Only when [`DeviceHandle::process`] is called: requests stay in flight until then.
    /// Blocking driver calls would wait forever; use the non-blocking ones.
    Manual,
}

/// What the transport saw the device do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Notifications from the driver.
    pub notifications: u64,
    /// Chains put in the used ring.
    pub chains: u64,
    /// Of those, chains whose head was an indirect descriptor.
    pub indirect_chains: u64,
    /// Buffers (descriptors) in those chains.
    pub descriptors: u64,
    /// Sum of the used lengths reported (after any inflation).
    pub used_bytes: u64,
    /// Most chains taken from the available ring in one processing pass.
    pub max_batch: u64,
}

struct QueueState {
    queue: Queue,
    deferred: VecDeque<Chain>,
}

struct State {
    model: Box<dyn DeviceModel>,
    region: &'static DmaRegion,
    offered: u64,
    driver_features: u64,
    status: DeviceStatus,
    queues: Vec<QueueState>,
    interrupt: bool,
    failed: Option<DeviceError>,
    stats: DeviceStats,
    inflate_used: u32,
}

struct Shared {
    state: Mutex<State>,
    mode: Mode,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in Inline mode happens after the guard is dropped, but be tolerant anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Builds a [`PoolTransport`] and its [`DeviceHandle`].
pub struct TransportBuilder {
    model: Box<dyn DeviceModel>,
    region: &'static DmaRegion,
    ring_features: u64,
    mode: Mode,
    inflate_used: u32,
}

impl TransportBuilder {
    /// A transport for `model` over `region`: inline processing, `VERSION_1` offered,
    /// neither indirect descriptors nor event indices.
    pub fn new(model: impl DeviceModel, region: &'static DmaRegion) -> Self {
        Self {
            model: Box::new(model),
            region,
            ring_features: F_VERSION_1,
            mode: Mode::Inline,
            inflate_used: 0,
        }
    }

    /// Offers `VIRTIO_F_INDIRECT_DESC`.
    pub fn indirect(mut self, on: bool) -> Self {
        self.ring_features = set_bit(self.ring_features, F_INDIRECT_DESC, on);
        self
    }

    /// Offers `VIRTIO_F_EVENT_IDX`.
    pub fn event_idx(mut self, on: bool) -> Self {
        self.ring_features = set_bit(self.ring_features, F_EVENT_IDX, on);
        self
    }

    /// When the device processes its queues.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// A lying device: adds `extra` to every used length it reports.
    pub fn inflate_used_len(mut self, extra: u32) -> Self {
        self.inflate_used = extra;
        self
    }

    /// The transport for the driver and the handle for the test.
    pub fn build(self) -> (PoolTransport, DeviceHandle) {
        let queues = (0..self.model.queues())
            .map(|_| QueueState {
                queue: Queue::new(self.model.max_queue_size()).expect("model's max queue size"),
                deferred: VecDeque::new(),
            })
            .collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                offered: self.model.features() | self.ring_features,
                model: self.model,
                region: self.region,
                driver_features: 0,
                status: DeviceStatus::empty(),
                queues,
                interrupt: false,
                failed: None,
                stats: DeviceStats::default(),
                inflate_used: self.inflate_used,
            }),
            mode: self.mode,
        });
        (
            PoolTransport {
                shared: shared.clone(),
            },
            DeviceHandle { shared },
        )
    }
}

fn set_bit(bits: u64, bit: u64, on: bool) -> u64 {
    if on {
        bits | bit
    } else {
        bits & !bit
    }
}

/// The driver's side: a [`Transport`] for `virtio-drivers`.
pub struct PoolTransport {
    shared: Arc<Shared>,
}

/// The test's side: processes queues (in [`Mode::Manual`]), reads figures and reaches the
/// model.
#[derive(Clone)]
pub struct DeviceHandle {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for PoolTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolTransport")
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

impl DeviceHandle {
    /// Processes every queue: serves what the driver made available (and chains held back
    /// earlier). Returns the number of chains put in the used ring.
    ///
    /// # Errors
    ///
    /// The device's failure, now or earlier: a failed device stays failed.
    pub fn process(&self) -> Result<usize, DeviceError> {
        let mut state = self.shared.lock();
        let mut done = 0;
        for q in 0..state.queues.len() as u16 {
            if state.queues[q as usize].queue.ready() {
                done += process_queue(&mut state, q)?;
            }
        }
        Ok(done)
    }

    /// The device's first failure, if any.
    pub fn failure(&self) -> Option<DeviceError> {
        self.shared.lock().failed.clone()
    }

    /// What the transport saw.
    pub fn stats(&self) -> DeviceStats {
        self.shared.lock().stats
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.shared.lock().driver_features
    }

    /// Runs `f` on the model, if it is an `M`.
    pub fn with_model<M: DeviceModel, R>(&self, f: impl FnOnce(&mut M) -> R) -> Option<R> {
        let mut state = self.shared.lock();
        let model: &mut dyn Any = &mut *state.model;
        model.downcast_mut::<M>().map(f)
    }
}

/// Serves queue `q` until its available ring is empty; raises the interrupt if the driver
/// wants one.
fn process_queue(state: &mut State, q: u16) -> Result<usize, DeviceError> {
    if let Some(e) = &state.failed {
        return Err(e.clone());
    }
    let result = serve(state, q);
    if let Err(e) = &result {
        state.failed = Some(e.clone());
        state.status |= DeviceStatus::DEVICE_NEEDS_RESET;
    }
    result
}

fn serve(state: &mut State, q: u16) -> Result<usize, DeviceError> {
    let State {
        model,
        region,
        queues,
        stats,
        interrupt,
        inflate_used,
        ..
    } = state;
    let memory = region.memory();
    let mem = &memory;
    let qs = queues
        .get_mut(q as usize)
        .ok_or(DeviceError::QueueNotReady { queue: q })?;
    if !qs.queue.ready() {
        return Err(DeviceError::QueueNotReady { queue: q });
    }
    if !qs.queue.is_valid(mem) {
        return Err(DeviceError::RingsOutsidePool {
            queue: q,
            desc: qs.queue.desc_table(),
            avail: qs.queue.avail_ring(),
            used: qs.queue.used_ring(),
        });
    }
    let queue_error = |e: virtio_queue::Error| DeviceError::Queue {
        queue: q,
        error: e.to_string(),
    };
    let desc_table = qs.queue.desc_table();
    let size = qs.queue.size();
    let mut done = 0;
    loop {
        let mut todo: Vec<Chain> = qs.deferred.drain(..).collect();
        let fresh: Vec<_> = qs.queue.iter(mem).map_err(queue_error)?.collect();
        stats.max_batch = stats.max_batch.max(fresh.len() as u64);
        for c in fresh {
            todo.push(Chain::collect(q, desc_table, size, c, mem)?);
        }
        for chain in todo {
            match model.handle(&chain, mem)? {
                Handled::Later => qs.deferred.push_back(chain),
                Handled::Used(n) => {
                    let len = n.saturating_add(*inflate_used);
                    qs.queue
                        .add_used(mem, chain.head, len)
                        .map_err(queue_error)?;
                    stats.chains += 1;
                    stats.indirect_chains += u64::from(chain.indirect);
                    stats.descriptors += chain.descriptors.len() as u64;
                    stats.used_bytes += u64::from(len);
                    done += 1;
                }
            }
        }
        // Re-arm notifications; if the driver added more meanwhile, go round again.
        if !qs.queue.enable_notification(mem).map_err(queue_error)? {
            break;
        }
    }
    if done > 0 && qs.queue.needs_notification(mem).map_err(queue_error)? {
        *interrupt = true;
    }
    Ok(done)
}

impl Transport for PoolTransport {
    fn device_type(&self) -> DeviceType {
        self.shared.lock().model.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.shared.lock().offered
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        let mut state = self.shared.lock();
        state.driver_features = driver_features & state.offered;
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        let state = self.shared.lock();
        if (queue as usize) < state.queues.len() {
            u32::from(state.model.max_queue_size())
        } else {
            0
        }
    }

    fn notify(&mut self, queue: u16) {
        let mut state = self.shared.lock();
        state.stats.notifications += 1;
        if self.shared.mode == Mode::Inline {
            let result = process_queue(&mut state, queue);
            drop(state);
            if let Err(e) = result {
                panic!("virtio device model failed: {e}");
            }
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.shared.lock().status
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut state = self.shared.lock();
        if status.is_empty() {
            // Reset.
            for qs in &mut state.queues {
                qs.queue.reset();
                qs.deferred.clear();
            }
            state.driver_features = 0;
            state.interrupt = false;
        }
        state.status = status;
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let mut state = self.shared.lock();
        let event_idx = state.driver_features & F_EVENT_IDX != 0;
        let Some(qs) = state.queues.get_mut(queue as usize) else {
            return;
        };
        let q = &mut qs.queue;
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        q.set_size(size as u16);
        let (lo, hi) = split(descriptors);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = split(driver_area);
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(device_area);
        q.set_used_ring_address(lo, hi);
        q.set_event_idx(event_idx);
        q.set_ready(true);
    }

    fn queue_unset(&mut self, queue: u16) {
        let mut state = self.shared.lock();
        if let Some(qs) = state.queues.get_mut(queue as usize) {
            qs.queue.reset();
            qs.deferred.clear();
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        let state = self.shared.lock();
        state
            .queues
            .get(queue as usize)
            .is_some_and(|qs| qs.queue.ready())
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let mut state = self.shared.lock();
        if std::mem::take(&mut state.interrupt) {
            InterruptStatus::QUEUE_INTERRUPT
        } else {
            InterruptStatus::empty()
        }
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let config = self.shared.lock().model.config();
        let end = offset
            .checked_add(size_of::<T>())
            .ok_or(Error::ConfigSpaceTooSmall)?;
        let bytes = config.get(offset..end).ok_or(Error::ConfigSpaceTooSmall)?;
        T::read_from_bytes(bytes).map_err(|_| Error::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), Error> {
        let mut state = self.shared.lock();
        if offset + size_of::<T>() > state.model.config().len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        state.model.write_config(offset, value.as_bytes());
        Ok(())
    }
}

//! The discrete-event simulation: one binary heap of timed events, a FIFO of messages (arrival
//! time, work time, deliveries), the workers, the metric pipeline and the controller.
//!
//! Arrivals are not in the heap: the next one is kept aside and compared with the heap's first
//! event, so the heap holds only the jobs in hand, worker start-ups and the periodic ticks.
//! Nothing is allocated per job: a message is 24 bytes in a ring buffer, a wait is a count in a
//! histogram.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::Rng;
use rand_pcg::Pcg64Mcg;
use warren_hpa::Timestamp;
use warren_policy::{PoolCounts, Synced};

use crate::arrivals::ArrivalStream;
use crate::keda::{
    KedaTrigger, ManagementStats, QueueCounters, QueueStatus, RabbitProtocol, RabbitTrigger,
};
use crate::oracle::{Oracle, STEP_SECS as ORACLE_STEP_SECS};
use crate::outcome::{Decision, RunOutcome, Sample, ScaleCause, ScaleEvent, Totals};
use crate::policy::{Controller, MetricInput, PolicyError, PolicySpec, Signals};
use crate::scenario::{MetricSource, Scenario, VictimOrder};
use crate::work::WorkSampler;

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The policy does not fit the scenario.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// The scenario cannot be simulated.
    #[error("{0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
}

/// Waits are kept in microseconds, to 3 significant digits, up to 30 days.
const WAIT_MAX_MICROS: u64 = 30 * 24 * 3600 * 1_000_000;

#[derive(Clone, Copy, Debug)]
enum Event {
    Complete {
        worker: u32,
        generation: u32,
        slot: u32,
    },
    Ready {
        worker: u32,
        generation: u32,
    },
    Kill {
        worker: u32,
        generation: u32,
    },
    Burst {
        index: u32,
    },
    BrokerTick,
    /// The management plugin's statistics sample (KEDA's rabbitmq scaler over HTTP reads it).
    ManagementTick,
    Scrape,
    KedaPoll,
    Sync,
    Oracle,
    Sample,
}

impl Event {
    /// At one time: work first (a finished job frees its worker for the arrival), then arrivals
    /// (priority 4, outside the heap), then the broker's view, the scrape, KEDA, the HPA, the
    /// sample.
    fn priority(self) -> u8 {
        match self {
            Event::Complete { .. } => 0,
            Event::Ready { .. } => 1,
            Event::Kill { .. } => 2,
            Event::Burst { .. } => 3,
            Event::BrokerTick | Event::ManagementTick => 5,
            Event::Scrape => 6,
            Event::KedaPoll => 7,
            Event::Sync | Event::Oracle => 8,
            Event::Sample => 9,
        }
    }
}

const ARRIVAL_PRIORITY: u8 = 4;

#[derive(Clone, Copy, Debug)]
struct Scheduled {
    at: f64,
    priority: u8,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so that the max-heap pops the earliest event; the sequence number breaks ties
    /// in the order events were scheduled, which keeps runs reproducible.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .total_cmp(&self.at)
            .then(other.priority.cmp(&self.priority))
            .then(other.seq.cmp(&self.seq))
    }
}

#[derive(Clone, Copy, Debug)]
struct Message {
    arrived: f64,
    work: f64,
    deliveries: u32,
}

#[derive(Clone, Copy, Debug)]
struct Job {
    message: Message,
    started: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Starting,
    Ready,
    Stopping,
    Gone,
}

#[derive(Debug)]
struct Worker {
    generation: u32,
    state: State,
    created: f64,
    ready_since: f64,
    order: u64,
    in_hand: u32,
    jobs: Vec<Option<Job>>,
    /// The busy state the pod's deletion-cost annotation last got (false: idle, cost 0, also
    /// what a pod without the annotation counts as).
    annotated_busy: bool,
    /// When `in_hand` last went from 0 to more or back.
    busy_changed: f64,
}

impl Worker {
    /// Whether the pod's annotation says busy at `now`: the current state once it has lasted
    /// `debounce`, else the one written before (`warren worker --pod-deletion-cost`).
    fn annotated_busy_at(&self, now: f64, debounce: f64) -> bool {
        if now - self.busy_changed >= debounce {
            self.in_hand > 0
        } else {
            self.annotated_busy
        }
    }

    /// To call just before `in_hand` crosses 0: settles what the previous state wrote.
    fn busy_changes(&mut self, now: f64, debounce: f64) {
        self.annotated_busy = self.annotated_busy_at(now, debounce);
        self.busy_changed = now;
    }
}

struct Sim<'a> {
    scenario: &'a Scenario,
    now: f64,
    end: f64,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    queue: VecDeque<Message>,
    workers: Vec<Worker>,
    /// One entry per free delivery slot of a ready worker, in the order they freed up: the
    /// broker's round robin over consumers with credit. Entries of stopped workers are skipped.
    free: VecDeque<(u32, u32)>,
    next_order: u64,
    current: u32,
    ready_workers: u32,
    running: u32,
    unacked: u64,
    arrivals: ArrivalStream,
    next_arrival: Option<f64>,
    arrival_rng: Pcg64Mcg,
    work_rng: Pcg64Mcg,
    startup_rng: Pcg64Mcg,
    sampler: WorkSampler,
    controller: Controller,
    oracle: Option<Oracle>,
    desired: u32,
    broker_view: Option<Signals>,
    scraped: Option<Signals>,
    /// Deliveries so far, redeliveries included.
    delivered: u64,
    /// The management plugin's last two samples.
    management: ManagementStats,
    /// Each trigger's metric at KEDA's last poll (`useCachedMetrics`).
    keda_cached: Vec<Option<f64>>,
    /// The ScaledObject's `status.lastActiveTime`.
    keda_last_active: Option<f64>,
    waits: Histogram<u64>,
    interval_waits: Histogram<u64>,
    totals: Totals,
    samples: Vec<Sample>,
    decisions: Vec<Decision>,
    scale_events: Vec<ScaleEvent>,
    last_sample: (f64, u64, u64),
    burst_open: Option<usize>,
    pattern: Option<warren_pattern::Pattern>,
}

/// Checks that `policy` can run `scenario`, without running it.
pub fn check(scenario: &Scenario, policy: &PolicySpec) -> Result<(), SimError> {
    scenario.check()?;
    policy.build(&scenario.replicas, scenario.metrics.signal)?;
    Ok(())
}

/// Runs `scenario` under `policy`.
pub fn run(scenario: &Scenario, policy: &PolicySpec) -> Result<RunOutcome, SimError> {
    run_with_progress(scenario, policy, &mut |_| {})
}

/// Runs `scenario` under `policy`, calling `progress` with the share of simulated time done (0 to
/// 1) every few hundred thousand events.
pub fn run_with_progress(
    scenario: &Scenario,
    policy: &PolicySpec,
    progress: &mut dyn FnMut(f64),
) -> Result<RunOutcome, SimError> {
    scenario.check()?;
    let controller = policy.build(&scenario.replicas, scenario.metrics.signal)?;
    let metric_names = controller.metric_names.clone();
    let mut sim = Sim::new(scenario, policy, controller)?;
    sim.run(progress);
    Ok(sim.finish(metric_names))
}

fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure is a bug here.
    Histogram::new_with_bounds(1, WAIT_MAX_MICROS, 3).expect("valid histogram bounds")
}

/// The per-sample histogram is cleared at every sample, thousands of times a run: milliseconds
/// to 2 significant digits keep it a few thousand counts, where the totals' one has 60,000.
fn interval_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, WAIT_MAX_MICROS / 1000, 2).expect("valid histogram bounds")
}

impl<'a> Sim<'a> {
    fn new(
        scenario: &'a Scenario,
        policy: &PolicySpec,
        controller: Controller,
    ) -> Result<Self, SimError> {
        let pattern = scenario.pattern()?;
        let sampler = scenario
            .work
            .sampler()
            .map_err(|e| crate::scenario::ScenarioError(format!("work.{e}")))?;
        // Separate streams: the arrivals and each job's work time do not depend on the policy,
        // so every policy sees the very same jobs.
        let seed = u128::from(scenario.seed);
        let oracle = controller
            .oracle
            .map(|spec| Oracle::new(spec, scenario))
            .transpose()?;
        let mut sim = Sim {
            scenario,
            now: 0.0,
            end: scenario.duration_secs,
            heap: BinaryHeap::new(),
            seq: 0,
            queue: VecDeque::new(),
            workers: Vec::new(),
            free: VecDeque::new(),
            next_order: 0,
            current: 0,
            ready_workers: 0,
            running: 0,
            unacked: 0,
            arrivals: ArrivalStream::new(pattern.clone(), scenario.arrivals.process),
            next_arrival: None,
            arrival_rng: Pcg64Mcg::new(seed << 2 | 1),
            work_rng: Pcg64Mcg::new(seed << 2 | 2),
            startup_rng: Pcg64Mcg::new(seed << 2 | 3),
            sampler,
            desired: 0,
            broker_view: None,
            scraped: None,
            delivered: 0,
            management: ManagementStats::default(),
            keda_cached: Vec::new(),
            keda_last_active: None,
            waits: histogram(),
            interval_waits: interval_histogram(),
            totals: Totals {
                scenario: scenario.description.clone(),
                policy: policy.name().to_owned(),
                duration_secs: scenario.duration_secs,
                slo_secs: scenario.slo_secs,
                burst_drain_secs: vec![None; scenario.arrivals.bursts.len()],
                ..Totals::default()
            },
            samples: Vec::new(),
            decisions: Vec::new(),
            scale_events: Vec::new(),
            last_sample: (0.0, 0, 0),
            burst_open: None,
            pattern,
            controller,
            oracle,
        };
        let initial = scenario
            .workers
            .initial
            .or(sim.controller.fixed)
            .or(sim.oracle.as_ref().map(|o| o.workers_at(0.0)))
            .unwrap_or(sim.controller.min)
            .min(sim.controller.max.max(sim.controller.fixed.unwrap_or(0)));
        for _ in 0..initial {
            let index = sim.spawn();
            sim.make_ready(index);
        }
        sim.desired = initial;
        let ticks = &scenario.metrics;
        if ticks.broker_refresh_secs > 0.0 {
            let phase = ticks
                .broker_phase_secs
                .unwrap_or(ticks.broker_refresh_secs / 2.0);
            sim.schedule(phase, Event::BrokerTick);
        }
        if sim.controller.engine.is_some() {
            // KEDA's rabbitmq scaler reads the broker itself; its prometheus scaler, Prometheus.
            let scraped = sim
                .controller
                .keda
                .as_ref()
                .is_none_or(|k| k.uses_capacity_metric());
            if ticks.source == MetricSource::Prometheus && scraped {
                sim.schedule(0.0, Event::Scrape);
            }
            sim.schedule(0.0, Event::Sync);
        }
        if let Some(keda) = &sim.controller.keda {
            let management = keda.uses_management_api();
            sim.keda_cached = vec![None; keda.triggers.len()];
            if management {
                // The plugin's sampling is not in step with KEDA's poll: by default half an
                // interval off.
                let phase = ticks
                    .management_phase_secs
                    .unwrap_or(crate::keda::MANAGEMENT_SAMPLE_SECS / 2.0);
                sim.schedule(phase, Event::ManagementTick);
            }
            sim.schedule(0.0, Event::KedaPoll);
        }
        if sim.oracle.is_some() {
            sim.schedule(ORACLE_STEP_SECS, Event::Oracle);
        }
        for (index, burst) in scenario.arrivals.bursts.iter().enumerate() {
            sim.schedule(
                burst.at_secs,
                Event::Burst {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                },
            );
        }
        sim.schedule(0.0, Event::Sample);
        sim.next_arrival = sim.arrivals.next_time(&mut sim.arrival_rng);
        Ok(sim)
    }

    fn schedule(&mut self, at: f64, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            priority: event.priority(),
            seq: self.seq,
            event,
        });
    }

    fn run(&mut self, progress: &mut dyn FnMut(f64)) {
        let mut steps: u64 = 0;
        loop {
            steps += 1;
            if steps.is_multiple_of(500_000) {
                progress((self.now / self.end).min(1.0));
            }
            let heap_first = self.heap.peek().map(|s| (s.at, s.priority));
            let take_arrival = match (self.next_arrival, heap_first) {
                (Some(a), Some((h, p))) => (a, ARRIVAL_PRIORITY) < (h, p),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if take_arrival {
                let Some(at) = self.next_arrival else { break };
                if at > self.end {
                    self.next_arrival = None;
                    continue;
                }
                self.now = at;
                self.arrive(1, at);
                self.next_arrival = self.arrivals.next_time(&mut self.arrival_rng);
            } else {
                let Some(next) = self.heap.pop() else { break };
                if next.at > self.end {
                    break;
                }
                self.now = next.at;
                self.handle(next.event);
            }
            self.dispatch();
        }
        self.now = self.end;
        progress(1.0);
    }

    fn arrive(&mut self, jobs: u32, at: f64) {
        for _ in 0..jobs {
            let work = self.sampler.draw(&mut self.work_rng);
            self.queue.push_back(Message {
                arrived: at,
                work,
                deliveries: 0,
            });
        }
        self.totals.jobs_arrived += u64::from(jobs);
        let ready = self.queue.len() as u64;
        self.totals.deepest_ready = self.totals.deepest_ready.max(ready);
        self.totals.deepest_backlog = self.totals.deepest_backlog.max(ready + self.unacked);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Complete {
                worker,
                generation,
                slot,
            } => self.complete(worker, generation, slot),
            Event::Ready { worker, generation } => {
                if self.workers[worker as usize].generation == generation
                    && self.workers[worker as usize].state == State::Starting
                {
                    self.make_ready(worker);
                }
            }
            Event::Kill { worker, generation } => {
                let w = &self.workers[worker as usize];
                if w.generation == generation && w.state == State::Stopping {
                    self.interrupt(worker);
                    self.remove(worker);
                }
            }
            Event::Burst { index } => {
                let burst = self.scenario.arrivals.bursts[index as usize];
                self.arrive(burst.jobs, self.now);
                self.burst_open = Some(index as usize);
            }
            Event::BrokerTick => {
                self.broker_view = Some(self.live());
                self.schedule(
                    self.now + self.scenario.metrics.broker_refresh_secs,
                    Event::BrokerTick,
                );
            }
            Event::ManagementTick => {
                self.management.record(QueueCounters {
                    at_secs: self.now,
                    ready: self.queue.len() as u64,
                    unacked: self.unacked,
                    published_total: self.totals.jobs_arrived,
                    delivered_total: self.delivered,
                });
                self.schedule(
                    self.now + crate::keda::MANAGEMENT_SAMPLE_SECS,
                    Event::ManagementTick,
                );
            }
            Event::Scrape => {
                self.scraped = Some(self.broker_read());
                self.schedule(
                    self.now + self.scenario.metrics.scrape_interval_secs,
                    Event::Scrape,
                );
            }
            Event::KedaPoll => self.keda_poll(),
            Event::Oracle => {
                if let Some(oracle) = &self.oracle {
                    let desired = oracle.workers_at(self.now);
                    self.desired = desired;
                    self.scale_to(desired, ScaleCause::Oracle);
                }
                self.schedule(self.now + ORACLE_STEP_SECS, Event::Oracle);
            }
            Event::Sync => {
                self.sync();
                self.schedule(
                    self.now + self.scenario.metrics.sync_period_secs,
                    Event::Sync,
                );
            }
            Event::Sample => {
                self.sample();
                if self.scenario.end_when_settled && self.settled() {
                    // As `warren demo` stops: the load over, the queue empty, the pool back
                    // at its minimum.
                    self.end = self.now;
                    return;
                }
                let next = self.now + self.scenario.sample_interval();
                self.schedule(next.min(self.end), Event::Sample);
                if self.now >= self.end {
                    // The last sample is at the end; no more.
                    self.heap.retain(|s| !matches!(s.event, Event::Sample));
                }
            }
        }
    }

    /// No more arrivals, nothing ready or in hand, no worker stopping, and the pool at the
    /// policy's minimum.
    fn settled(&self) -> bool {
        let bursts_over = self
            .scenario
            .arrivals
            .bursts
            .iter()
            .all(|b| b.at_secs <= self.now);
        self.next_arrival.is_none()
            && bursts_over
            && self.queue.is_empty()
            && self.unacked == 0
            && self.current == self.controller.min
            && self.workers.iter().all(|w| w.state != State::Stopping)
    }

    fn live(&self) -> Signals {
        Signals {
            at_secs: self.now,
            ready: self.queue.len() as u64,
            unacked: self.unacked,
            arrived_total: self.totals.jobs_arrived,
            acked_total: self.totals.jobs_done,
            busy_secs_total: self.totals.busy_seconds,
            workers_current: self.current,
            workers_ready: self.ready_workers,
        }
    }

    /// What the broker's plugin answers now: its last refresh, or the live counts without one.
    fn broker_read(&self) -> Signals {
        if self.scenario.metrics.broker_refresh_secs > 0.0 {
            self.broker_view.unwrap_or_default()
        } else {
            self.live()
        }
    }

    // -----------------------------------------------------------------------------------------
    // Workers

    fn spawn(&mut self) -> u32 {
        let order = self.next_order;
        self.next_order += 1;
        let prefetch = self.scenario.workers.prefetch as usize;
        let index = match self.workers.iter().position(|w| w.state == State::Gone) {
            Some(i) => i,
            None => {
                self.workers.push(Worker {
                    generation: 0,
                    state: State::Gone,
                    created: 0.0,
                    ready_since: 0.0,
                    order: 0,
                    in_hand: 0,
                    jobs: vec![None; prefetch],
                    annotated_busy: false,
                    busy_changed: 0.0,
                });
                self.workers.len() - 1
            }
        };
        let w = &mut self.workers[index];
        w.state = State::Starting;
        w.created = self.now;
        w.order = order;
        w.in_hand = 0;
        w.annotated_busy = false;
        w.busy_changed = self.now;
        self.current += 1;
        let running = self
            .workers
            .iter()
            .filter(|w| w.state != State::Gone)
            .count();
        self.totals.peak_workers = self.totals.peak_workers.max(running as u32);
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    fn start_up(&mut self) {
        let index = self.spawn();
        let w = &self.scenario.workers;
        let jitter = if w.startup_jitter_secs > 0.0 {
            self.startup_rng.random_range(0.0..w.startup_jitter_secs)
        } else {
            0.0
        };
        let generation = self.workers[index as usize].generation;
        self.schedule(
            self.now + w.startup_secs + jitter,
            Event::Ready {
                worker: index,
                generation,
            },
        );
    }

    fn make_ready(&mut self, index: u32) {
        let w = &mut self.workers[index as usize];
        w.state = State::Ready;
        w.ready_since = self.now;
        let generation = w.generation;
        self.ready_workers += 1;
        for _ in 0..self.scenario.workers.prefetch {
            self.free.push_back((index, generation));
        }
    }

    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some((index, generation)) = self.free.pop_front() else {
                break;
            };
            let w = &self.workers[index as usize];
            if w.generation != generation || w.state != State::Ready {
                continue;
            }
            let Some(mut message) = self.queue.pop_front() else {
                break;
            };
            message.deliveries += 1;
            self.delivered += 1;
            if message.deliveries > 1 {
                self.totals.jobs_redelivered += 1;
            }
            let now = self.now;
            let debounce = self.scenario.workers.deletion_cost_debounce_secs;
            let w = &mut self.workers[index as usize];
            let Some(slot) = w.jobs.iter().position(Option::is_none) else {
                // A token never outnumbers the free slots; put the message back if it did.
                self.queue.push_front(message);
                continue;
            };
            w.jobs[slot] = Some(Job {
                message,
                started: now,
            });
            if w.in_hand == 0 {
                w.busy_changes(now, debounce);
            }
            w.in_hand += 1;
            self.unacked += 1;
            self.running += 1;
            self.schedule(
                now + message.work,
                Event::Complete {
                    worker: index,
                    generation,
                    slot: slot as u32,
                },
            );
            if self.queue.is_empty() {
                if let Some(burst) = self.burst_open.take() {
                    let at = self.scenario.arrivals.bursts[burst].at_secs;
                    self.totals.burst_drain_secs[burst] = Some(now - at);
                }
            }
        }
    }

    fn complete(&mut self, index: u32, generation: u32, slot: u32) {
        let (now, debounce) = (self.now, self.scenario.workers.deletion_cost_debounce_secs);
        let w = &mut self.workers[index as usize];
        if w.generation != generation {
            return; // the job was interrupted and requeued
        }
        let Some(job) = w.jobs[slot as usize].take() else {
            return;
        };
        if w.in_hand == 1 {
            w.busy_changes(now, debounce);
        }
        w.in_hand -= 1;
        let state = w.state;
        let idle = w.in_hand == 0;
        self.unacked -= 1;
        self.running -= 1;
        self.totals.jobs_done += 1;
        self.totals.busy_seconds += job.message.work;
        let wait = job.started - job.message.arrived;
        let micros = (wait * 1e6).round() as u64;
        self.waits.saturating_record(micros);
        self.interval_waits.saturating_record(micros / 1000);
        self.totals.wait_max_secs = self.totals.wait_max_secs.max(wait);
        match state {
            State::Ready => self.free.push_back((index, generation)),
            State::Stopping if idle => self.remove(index),
            _ => {}
        }
    }

    /// The jobs in hand go back to the head of the queue, or to the dead letters past the limit.
    fn interrupt(&mut self, index: u32) {
        let limit = self.scenario.queue.delivery_limit;
        let (now, debounce) = (self.now, self.scenario.workers.deletion_cost_debounce_secs);
        let w = &mut self.workers[index as usize];
        let mut returned = Vec::new();
        for job in w.jobs.iter_mut().filter_map(Option::take) {
            returned.push(job.message);
        }
        if w.in_hand > 0 {
            w.busy_changes(now, debounce);
        }
        w.in_hand = 0;
        for message in returned.into_iter().rev() {
            self.unacked -= 1;
            self.running -= 1;
            self.totals.jobs_interrupted += 1;
            if message.deliveries >= limit {
                self.totals.jobs_dead_lettered += 1;
            } else {
                self.queue.push_front(message);
            }
        }
    }

    fn remove(&mut self, index: u32) {
        let w = &mut self.workers[index as usize];
        match w.state {
            State::Ready => {
                self.current -= 1;
                self.ready_workers -= 1;
            }
            State::Starting => self.current -= 1,
            State::Stopping | State::Gone => {}
        }
        if w.state != State::Gone {
            self.totals.worker_seconds += self.now - w.created;
        }
        w.state = State::Gone;
        w.generation = w.generation.wrapping_add(1);
        self.free.retain(|&(i, _)| i != index);
    }

    fn scale_to(&mut self, target: u32, cause: ScaleCause) {
        let from = self.current;
        if target == from {
            return;
        }
        self.scale_events.push(ScaleEvent {
            at_secs: self.now,
            from,
            to: target,
            cause,
        });
        self.totals.scale_events += 1;
        if target > from {
            for _ in from..target {
                self.start_up();
            }
            return;
        }
        let debounce = self.scenario.workers.deletion_cost_debounce_secs;
        let mut candidates: Vec<(bool, bool, f64, u64, u32)> = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w.state, State::Starting | State::Ready))
            .map(|(i, w)| {
                let ready = w.state == State::Ready;
                let (costly, second) = match self.scenario.workers.victim_order {
                    VictimOrder::IdleFirst => (false, f64::from(w.in_hand)),
                    // Ready for the shortest time first: the latest `ready_since`.
                    VictimOrder::Replicaset => (false, -w.ready_since),
                    VictimOrder::DeletionCost => {
                        (w.annotated_busy_at(self.now, debounce), -w.ready_since)
                    }
                };
                (ready, costly, second, w.order, i as u32)
            })
            .collect();
        // Not ready first, then the lower deletion cost, then the order's second key, then the
        // youngest.
        candidates.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(b.3.cmp(&a.3))
        });
        let drain = self.scenario.workers.drain;
        let grace = self.scenario.workers.drain_grace_secs;
        for &(_, _, _, _, index) in candidates.iter().take((from - target) as usize) {
            let w = &self.workers[index as usize];
            if w.state == State::Starting || w.in_hand == 0 {
                self.remove(index);
            } else if drain {
                self.current -= 1;
                self.ready_workers -= 1;
                let w = &mut self.workers[index as usize];
                w.state = State::Stopping;
                let generation = w.generation;
                self.free.retain(|&(i, _)| i != index);
                if let Some(grace) = grace {
                    self.schedule(
                        self.now + grace,
                        Event::Kill {
                            worker: index,
                            generation,
                        },
                    );
                }
            } else {
                self.interrupt(index);
                self.remove(index);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // The controller

    fn sync(&mut self) {
        if self.controller.engine.is_none() {
            return;
        }
        let seen = match (&self.controller.keda, self.scenario.metrics.source) {
            // KEDA's metrics server asks the scaler, which asks the broker.
            (Some(_), _) | (None, MetricSource::Broker) => Some(self.broker_read()),
            (None, MetricSource::Prometheus) => self.scraped,
        };
        let keda = self.controller.keda.take();
        let mut keda_values = Vec::new();
        for (i, t) in keda.iter().flat_map(|k| k.triggers.iter().enumerate()) {
            keda_values.push(match self.keda_cached.get(i).copied().flatten() {
                Some(v) if t.use_cached_metrics() => Some(v),
                _ => self.keda_read(i, t).map(|(v, _)| v),
            });
        }
        self.controller.keda = keda;
        let readings: Vec<Result<f64, String>> = self
            .controller
            .inputs
            .iter_mut()
            .map(|input| match (input, &seen) {
                (MetricInput::Keda(i), _) => keda_values.get(*i).copied().flatten(),
                (MetricInput::Signal(s), Some(seen)) => Some(s.read(seen)),
                (MetricInput::Formula(f), Some(seen)) => Some(f.value(seen)),
                (_, None) => None,
            })
            .map(|value| value.ok_or_else(|| "no scrape has the series yet".to_owned()))
            .collect();
        let now = Timestamp::from_duration(Duration::from_secs_f64(self.now));
        let pool = PoolCounts {
            current: self.current,
            ready: self.ready_workers,
        };
        let Some(engine) = self.controller.engine.as_mut() else {
            return;
        };
        let Synced { decision, record } =
            warren_policy::sync(engine, now, self.now, pool, &readings);
        let desired = record.desired;
        self.decisions.push(record);
        self.totals.decisions += 1;
        self.totals.desired_per_sync.push(desired);
        self.desired = desired;
        if decision.rescale {
            self.scale_to(desired, ScaleCause::Hpa);
        }
    }

    /// What trigger `t`'s scaler reads now: over AMQP the broker's ready count (a passive
    /// declare), over HTTP the management API's last sample.
    fn keda_status(&self, t: &RabbitTrigger) -> QueueStatus {
        match t.protocol {
            RabbitProtocol::Amqp => QueueStatus {
                messages: self.broker_read().ready as f64,
                ..QueueStatus::default()
            },
            RabbitProtocol::Http => self.management.status(self.now, t.exclude_unacknowledged),
        }
    }

    /// Trigger `i`'s metric and activity now; None when its scaler answers an error (the
    /// capacity metric with no scrape yet and `ignoreNullValues: "false"`).
    fn keda_read(&mut self, i: usize, t: &KedaTrigger) -> Option<(f64, bool)> {
        match t {
            KedaTrigger::Rabbit(r) => Some(r.metric_and_activity(self.keda_status(r))),
            KedaTrigger::Capacity(c) => {
                // Prometheus' last scrape, or the broker as `warren autoscale` reads it: what
                // the capacity HPA's metric reads too.
                let seen = match self.scenario.metrics.source {
                    MetricSource::Prometheus => self.scraped,
                    MetricSource::Broker => Some(self.broker_read()),
                };
                let formula = self
                    .controller
                    .keda_formulas
                    .get_mut(i)
                    .and_then(Option::as_mut);
                match (seen, formula) {
                    (Some(seen), Some(f)) => {
                        let v = f.value(&seen);
                        Some((v, v > c.activation_threshold))
                    }
                    _ if c.ignore_null_values => Some((0.0, false)),
                    _ => None,
                }
            }
        }
    }

    /// KEDA's scale loop every `pollingInterval`: every trigger's metric and activity (the
    /// ScaledObject is active when any trigger is), cached for `useCachedMetrics`, then
    /// `RequestScale` ([`crate::keda::KedaLoop::request_scale`]).
    fn keda_poll(&mut self) {
        let Some(keda) = self.controller.keda.take() else {
            return;
        };
        let mut active = false;
        for (i, t) in keda.triggers.iter().enumerate() {
            // A scaler that answers an error is not active and caches nothing.
            let Some((metric, trigger_active)) = self.keda_read(i, t) else {
                continue;
            };
            if let Some(slot) = self.keda_cached.get_mut(i) {
                *slot = Some(metric);
            }
            active |= trigger_active;
        }
        let scale = keda.request_scale(active, self.current, self.now, &mut self.keda_last_active);
        if let Some((to, cause)) = scale {
            self.desired = to;
            self.scale_to(to, cause);
        }
        self.schedule(self.now + keda.polling_secs, Event::KedaPoll);
        self.controller.keda = Some(keda);
    }

    // -----------------------------------------------------------------------------------------
    // Outputs

    fn sample(&mut self) {
        let (t0, arrived0, acked0) = self.last_sample;
        let dt = self.now - t0;
        let rate = |now: u64, before: u64| {
            if dt > 0.0 {
                (now - before) as f64 / dt
            } else {
                0.0
            }
        };
        let p95 = (!self.interval_waits.is_empty())
            .then(|| self.interval_waits.value_at_quantile(0.95) as f64 / 1e3);
        self.interval_waits.reset();
        self.samples.push(Sample {
            t_secs: self.now,
            queue_ready: self.queue.len() as u64,
            queue_unacked: self.unacked,
            arrival_rate: rate(self.totals.jobs_arrived, arrived0),
            target_rate: self.pattern.as_ref().map_or(0.0, |p| p.rate_at(self.now)),
            processed_rate: rate(self.totals.jobs_done, acked0),
            processed_total: self.totals.jobs_done,
            workers_current: self.current,
            workers_ready: self.ready_workers,
            workers_desired: self.desired,
            queue_wait_p95_secs: p95,
        });
        self.last_sample = (self.now, self.totals.jobs_arrived, self.totals.jobs_done);
    }

    fn finish(mut self, metric_names: Vec<String>) -> RunOutcome {
        let end = self.end;
        self.totals.duration_secs = end;
        for w in &self.workers {
            if w.state != State::Gone {
                self.totals.worker_seconds += end - w.created;
            }
        }
        let t = &mut self.totals;
        t.jobs_unfinished = self.queue.len() as u64 + self.unacked;
        if let Some(oldest) = self.queue.front() {
            t.wait_max_secs = t.wait_max_secs.max(end - oldest.arrived);
        }
        let q = |h: &Histogram<u64>, quantile: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(quantile) as f64 / 1e6
            }
        };
        // A quantile is its bucket's highest value, which may pass the exact maximum.
        let max = t.wait_max_secs;
        t.wait_p50_secs = q(&self.waits, 0.50).min(max);
        t.wait_p95_secs = q(&self.waits, 0.95).min(max);
        t.wait_p99_secs = q(&self.waits, 0.99).min(max);
        let slo_micros = (self.scenario.slo_secs * 1e6).round() as u64;
        t.within_slo = if self.waits.is_empty() {
            1.0
        } else {
            self.waits.count_between(0, slo_micros) as f64 / self.waits.len() as f64
        };
        let prefetch = f64::from(self.scenario.workers.prefetch);
        t.floor_worker_seconds = t.busy_seconds / prefetch;
        t.cost_ratio = if t.floor_worker_seconds > 0.0 {
            t.worker_seconds / t.floor_worker_seconds
        } else {
            0.0
        };
        RunOutcome {
            totals: self.totals,
            samples: self.samples,
            decisions: self.decisions,
            scale_events: self.scale_events,
            metric_names,
        }
    }
}

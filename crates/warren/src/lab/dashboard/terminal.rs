//! The full-screen view's hold on the terminal: raw mode and the alternate screen, always given
//! back (on finish, on drop, on a panic, before the shutdown helper's immediate exit), and the
//! thread that watches the keyboard for a quit key.

use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use tokio_util::sync::CancellationToken;

use super::View;

/// Whether the dashboard holds the terminal (raw mode, alternate screen), for the restore hooks.
pub(super) static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);
static RESTORE_HOOKS: Once = Once::new();

/// Gives the terminal back if the dashboard holds it; safe to call more than once, and from
/// paths that skip `Drop` (registered with [`crate::shutdown::before_forced_exit`]).
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
}

/// Hands the terminal back on a panic and on the shutdown helper's immediate exit.
fn install_restore_hooks() {
    RESTORE_HOOKS.call_once(|| {
        crate::shutdown::before_forced_exit(restore_terminal);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}

pub(super) struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    /// Tells the input thread to end.
    stop: Arc<AtomicBool>,
    input: Option<JoinHandle<()>>,
}

impl Screen {
    pub(super) fn enter(quit: CancellationToken) -> anyhow::Result<Screen> {
        install_restore_hooks();
        terminal::enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let screen = (|| {
            execute!(
                std::io::stdout(),
                terminal::EnterAlternateScreen,
                cursor::Hide
            )?;
            let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
            terminal.clear()?;
            anyhow::Ok(terminal)
        })();
        let terminal = match screen {
            Ok(terminal) => terminal,
            Err(e) => {
                restore_terminal();
                return Err(e);
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let input = std::thread::Builder::new()
            .name("dashboard-keys".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || read_keys(&stop, &quit)
            });
        let input = match input {
            Ok(handle) => handle,
            Err(e) => {
                restore_terminal();
                return Err(e.into());
            }
        };
        Ok(Screen {
            terminal,
            stop,
            input: Some(input),
        })
    }

    pub(super) fn draw(&mut self, view: &View, stopping: bool) -> anyhow::Result<()> {
        self.terminal
            .draw(|frame| super::draw::render(frame, view, stopping))?;
        Ok(())
    }

    pub(super) fn stop_input(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(input) = self.input.take() {
            let _ = input.join();
        }
    }
}

/// Watches the keyboard on its own thread, so a quit key is seen at once, not at the next update.
fn read_keys(stop: &AtomicBool, quit: &CancellationToken) {
    // The short poll bounds how long finishing waits for this thread.
    while !stop.load(Ordering::SeqCst) {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                        && matches!(key.code, KeyCode::Char('c' | 'C'));
                    if ctrl_c || matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                        quit.cancel();
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            Err(_) => return,
        }
    }
}

"""Operations behind the CLI: opening the backends from settings (the composition
root), seeding, verifying and reading status. Not kernel: master and worker never
import it."""

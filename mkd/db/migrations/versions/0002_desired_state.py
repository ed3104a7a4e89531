"""desired state: declared instances

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('declared',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('observed_generation', sa.Integer(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('applied_resources', sa.JSON(), nullable=True),
    sa.Column('restarts', sa.Integer(), nullable=False),
    sa.Column('restart_times', sa.JSON(), nullable=False),
    sa.Column('not_before', sa.Float(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure', sa.JSON(), nullable=True),
    sa.Column('held', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('deleting', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('declared')
